"""`quantbench quality` end to end on the embedded SmolLM2-135M: determinism, f16 ~ 0, q4_0 > q8_0, records."""
import json

import pytest

from quantbench.harness import results
from quantbench.harness.cli import main


def test_quality_cli_is_deterministic_and_orders_formats(capsys, tmp_path, one_thread):
    store = tmp_path / "r.jsonl"
    argv = ["quality", "--ctx", "64", "--chunks", "2", "--kv", "f16,q8_0,q4_0", "--device", "cpu", "-o", "json",
            "--results", str(store)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "quality reference: chunk 2/2 (computed" in first.err and "quality q4_0: chunk 2/2" in first.err
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "quality reference: chunk 1/2 (from cache" in second.err
    rows, again = json.loads(first.out), json.loads(second.out)
    assert rows == again
    f16, q8, q4 = rows
    assert [r["kv"] for r in rows] == ["f16", "q8_0", "q4_0"] and f16["n_tokens"] == 2 * 31
    assert f16["kld_mean"] < 1e-5 and f16["same_top_pct"] > 95
    assert q4["kld_mean"] > q8["kld_mean"] > f16["kld_mean"]
    assert q4["ppl_ref"] == f16["ppl_ref"] and q4["ln_ppl_ratio"] > 0

    frame = results.load(store)
    assert len(frame) == 2 * 3 * 15 and set(frame["op"]) == {"quality"}
    kld = frame[(frame["metric"] == "kld_mean") & (frame["format"] == "q4_0")].iloc[0]
    assert kld["case"] == "ctx64,chunks2,corpus=pydoc_topics" and kld["variant"] == "dequant_sdpa"
    assert len(kld["samples"]) == 62 and kld["value"] == pytest.approx(q4["kld_mean"])
    assert kld["command"].startswith("quantbench quality --ctx 64")


def test_quality_cli_bad_input_exits_2(capsys, tmp_path):
    assert main(["quality", "--k", "q8_0", "--no-store"]) == 2
    assert "--k and --v go together" in capsys.readouterr().err
    assert main(["quality", "--corpus", str(tmp_path / "nope.txt"), "--no-store"]) == 2
    assert "corpus file not found" in capsys.readouterr().err
