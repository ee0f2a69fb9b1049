"""Trained turbo levels (kernels/formats/codebook_tables.py, harness/codebook_training.py): the
weighted Lloyd iteration, the tables and their checks, the format option through the fast cache
codecs, and `quantbench train-codebook` end to end on a tiny GGUF model."""
import json
import math

import pytest
import torch
from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

from quantbench.harness.cli import main
from quantbench.harness.codebook_training import weighted_lloyd, weighted_mse
from quantbench.harness.model.kv_cache import KVStore
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError, lloyd_max
from quantbench.kernels.formats.codebook_tables import trained_levels, trained_trellis_table

LEVELS = [-1.9, -1.2, -0.7, -0.25, 0.2, 0.7, 1.25, 2.0]


@pytest.fixture
def tables(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_CODEBOOKS", str(tmp_path))
    trained_levels.cache_clear()
    trained_trellis_table.cache_clear()
    (tmp_path / "mine.json").write_text(json.dumps({"bits": 3, "levels": LEVELS}))
    (tmp_path / "two.json").write_text(json.dumps({"bits": 2, "levels": [-1.5, -0.5, 0.5, 1.5]}))
    (tmp_path / "unsorted.json").write_text(json.dumps({"bits": 2, "levels": [0.5, -0.5, 1.5, -1.5]}))
    (tmp_path / "broken.json").write_text("{")
    yield tmp_path
    trained_levels.cache_clear()
    trained_trellis_table.cache_clear()


def test_uniform_weights_on_gaussian_samples_give_the_lloyd_max_levels():
    samples = torch.randn(400_000, generator=torch.Generator().manual_seed(0))
    levels = weighted_lloyd(samples, torch.ones_like(samples), 3)
    assert max(abs(a - b) for a, b in zip(levels, lloyd_max.gaussian_levels(3))) < 0.04  # tail samples are few


def test_weights_pull_the_levels_toward_the_heavy_samples():
    g = torch.Generator().manual_seed(1)
    samples = torch.randn(200_000, generator=g)
    heavy_tails = samples.abs().gt(1.5).double() * 9 + 1
    plain = weighted_lloyd(samples, torch.ones_like(samples), 2)
    weighted = weighted_lloyd(samples, heavy_tails.float(), 2)
    assert weighted[-1] > plain[-1] + 0.05 and weighted[0] < plain[0] - 0.05
    assert weighted_mse(samples, heavy_tails.float(), weighted) < weighted_mse(samples, heavy_tails.float(), plain)


def test_a_table_is_the_formats_codebook_scaled_like_the_gaussian_one(tables):
    fmt = formats.get("turbo3:levels=mine")
    assert fmt.spec == "turbo3:levels=mine"
    torch.testing.assert_close(fmt.codebook(64), torch.tensor(LEVELS) / 8)
    torch.testing.assert_close(fmt.boundaries(64), (torch.tensor(LEVELS[1:]) + torch.tensor(LEVELS[:-1])) / 16)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(2))
    decoded = fmt.decode(fmt.encode(x))
    assert not torch.equal(decoded, formats.get("turbo3").decode(formats.get("turbo3").encode(x)))
    torch.testing.assert_close(decoded.norm(dim=-1), x.norm(dim=-1), rtol=2e-3, atol=0)  # norm correction


def test_the_fast_cache_codec_reads_the_table(tables):
    fmt = formats.get("turbo3:levels=mine")
    x = torch.randn(9, 1, 2, 64, generator=torch.Generator().manual_seed(3))
    fast, reference = (KVStore(fmt, 16, 1, 2, 64, "cpu", torch.float32, fast=f) for f in (True, False))
    assert fast.codec is not None
    for store in (fast, reference):
        store.write(x, 0)
    assert torch.equal(fast.read(9, torch.float32), reference.read(9, torch.float32))


@pytest.mark.parametrize(("spec", "message"), [
    ("turbo3:levels=absent", "no trained codebook 'absent'"),
    ("turbo3:levels=two", "has 2-bit levels; this format needs 3"),
    ("turbo2:levels=unsorted", "distinct sorted finite levels"),
    ("turbo3:levels=broken", "not a table of `bits` and `levels`"),
    ("turbo3:levels=../up", "use lower-case letters"),
])
def test_bad_tables_are_clear_errors(tables, spec, message):
    with pytest.raises(FormatError, match=message):
        formats.get(spec)


@pytest.fixture
def tiny_gguf(tmp_path):
    cfg = tiny_hf_config()
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    return tmp_path / "tiny.gguf"


def test_train_codebook_writes_a_table_the_format_takes(tmp_path, tiny_gguf, monkeypatch, capsys):
    out = tmp_path / "tables"
    assert main(["train-codebook", "-m", str(tiny_gguf), "--side", "k", "--bits", "2",
                 "--weight", "q2", "--name", "tiny-k2", "--out", str(out)]) == 0
    table = json.loads((out / "tiny-k2.json").read_text())
    assert table["bits"] == 2 and table["levels"] == sorted(table["levels"]) and table["samples"] > 0
    assert table["weighted_mse"] <= table["gaussian_weighted_mse"] * (1 + 1e-9)
    assert table["command"].startswith("quantbench train-codebook --side k --bits 2 --weight q2 --name tiny-k2")
    assert "weighted MSE on the samples" in capsys.readouterr().out
    monkeypatch.setenv("QUANTBENCH_CODEBOOKS", str(out))
    trained_levels.cache_clear()
    assert formats.get("turbo2:levels=tiny-k2").codebook(4).tolist() == pytest.approx(
        [v / math.sqrt(4) for v in table["levels"]])
    trained_levels.cache_clear()
    assert main(["train-codebook", "-m", str(tiny_gguf), "--side", "v", "--weight", "q2",
                 "--name", "x", "--out", str(out)]) == 2


def test_a_tcq_table_by_name_and_its_checks(tables):
    import numpy as np

    from quantbench.kernels.formats.trellis import Trellis
    from quantbench.kernels.formats.trellis_training import trained_table

    base = trained_table(Trellis(2, 9))
    (tables / "tcq.json").write_text(json.dumps({"k": 2, "L": 9, "table": (base * 1.01).tolist()}))
    (tables / "short.json").write_text(json.dumps({"k": 2, "L": 9, "table": [0.0] * 10}))
    fmt = formats.get("turbo2_tcq:code=tcq")
    assert np.allclose(fmt.table, base * 1.01) and fmt.spec == "turbo2_tcq:code=tcq"
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(5))
    assert fmt.decode(fmt.encode(x)).shape == x.shape
    for spec, message in (("turbo3_tcq:code=tcq", "k=2, L=9; this format is k=3, L=9"),
                          ("turbo2_tcq:code=short", "needs 512 finite values"),
                          ("turbo2_tcq:code=mine", "not a TCQ table"),
                          ("turbo2_tcq:code=absent", "not one of trained, random, hash")):
        with pytest.raises(FormatError, match=message):
            formats.get(spec)


def test_train_codebook_tcq_fine_tunes_a_table_the_format_takes(tmp_path, tiny_gguf, monkeypatch, capsys):
    out = tmp_path / "tables"
    assert main(["train-codebook", "-m", str(tiny_gguf), "--tcq", "--side", "v", "--bits", "2",
                 "--name", "tiny-tcq2", "--out", str(out)]) == 0
    table = json.loads((out / "tiny-tcq2.json").read_text())
    assert (table["kind"], table["k"], table["L"], len(table["table"])) == ("tcq", 2, 9, 512)
    assert "turbo2_tcq:code=tiny-tcq2" in capsys.readouterr().out
    monkeypatch.setenv("QUANTBENCH_CODEBOOKS", str(out))
    assert formats.get("turbo2_tcq:code=tiny-tcq2").table.shape == (512,)
