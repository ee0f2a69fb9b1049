"""`quantbench quality --act` end to end on the embedded SmolLM2-135M: the cross product of weights and
activations, f32 with a rotation ~ the unquantized model, records labelled with the specs."""
import json

import pytest

from quantbench.harness import results
from quantbench.harness.cli import main


def test_weights_activations_and_kv_in_one_command(capsys, tmp_path, one_thread):
    store = tmp_path / "r.jsonl"
    argv = ["quality", "--ctx", "64", "--chunks", "1", "--weights", "q8_0", "--act",
            "int8,smooth=0.5;f32,rotate=1", "--smooth-sequences", "1", "--smooth-length", "32", "--kv", "q8_0",
            "--device", "cpu", "-o", "json", "--results", str(store)]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    labels = [(r["weights"], r["act"]) for r in rows]
    assert labels == [(None, None), ("default=q8_0", None), (None, "default=int8,smooth=0.5"),
                      ("default=q8_0", "default=int8,smooth=0.5"), (None, "default=f32,rotate=1"),
                      ("default=q8_0", "default=f32,rotate=1")]
    plain, weights, smooth, both, rotated, rotated_weights = rows
    assert rotated["kld_mean"] < 1e-3 and rotated["act_bits"] == 32
    assert smooth["kld_mean"] > rotated["kld_mean"] and smooth["act_bits"] == pytest.approx(8 + 32 / 576, rel=0.01)
    assert all(r["kv"] == "q8_0" for r in rows)

    frame = results.load(store)
    kld = frame[frame["metric"] == "kld_mean"]
    assert list(kld["format"]) == ["q8_0", "w:default=q8_0|kv:q8_0", "a:default=int8,smooth=0.5|kv:q8_0",
                                   "w:default=q8_0|a:default=int8,smooth=0.5|kv:q8_0",
                                   "a:default=f32,rotate=1|kv:q8_0", "w:default=q8_0|a:default=f32,rotate=1|kv:q8_0"]
    assert list(kld["variant"])[2:4] == ["smooth:calib=pydoc_topics:1x32+dequant_sdpa",
                                         "rtn+smooth:calib=pydoc_topics:1x32+dequant_sdpa"]
    assert set(frame[frame["metric"] == "act_bits"]["format"]) == set(kld["format"][2:])


def test_table_title_gives_bits_per_activation_and_bad_specs_exit_2(capsys, one_thread):
    assert main(["quality", "--ctx", "64", "--chunks", "1", "--act", "int4", "--device", "cpu", "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "a:default=int4: 4.0" in out and "bits per activation value over 120 quantized matmul inputs" in out
    assert main(["quality", "--act", "int8,smooth=2", "--no-store"]) == 2
    assert "smooth='2' is not a migration strength" in capsys.readouterr().err
    assert main(["quality", "--act", "q8_0,rotate=1", "--weights", "q8_0,embeddings=q8_0", "--no-store"]) == 2
    assert "embedding table cannot be quantized" in capsys.readouterr().err
