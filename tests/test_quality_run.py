"""quality_table and its records on a tiny GGUF model (fast): cache reuse, corrupt cache, records."""
import hashlib

import pytest
import torch
from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model, parse_kv_policy
from quantbench.harness.quality import METRICS, quality_records, quality_table
from quantbench.harness.quality.reference_cache import ReferenceCache
from quantbench.harness.quality.run import kld_samples

TEXT = ("The quick brown fox jumps over the lazy dog; then the dog sleeps, the fox runs home "
        "and the hens are safe for another night. ") * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    cfg = tiny_hf_config()
    write_gguf(folder / "tiny.gguf", cfg, random_hf_weights(cfg))
    (folder / "corpus.txt").write_text(TEXT)
    return load_model(folder / "tiny.gguf"), folder / "corpus.txt"


def test_table_orders_formats_and_reuses_the_cache(tiny, tmp_path, capsys):
    model, corpus = tiny
    rows = quality_table(model, ["f32", "q8_0", "q4_0"], corpus, ctx=16, chunks=3, cache_root=tmp_path)
    err = capsys.readouterr().err
    assert "quality reference: chunk 1/3 (computed" in err and "quality q4_0: chunk 3/3" in err
    f32, q8, q4 = rows
    assert [r["kv"] for r in rows] == ["f32", "q8_0", "q4_0"]
    assert f32["n_tokens"] == 3 * 7 and len(f32["kld_samples"]) == 21
    assert f32["kld_mean"] < 1e-7 and f32["same_top_pct"] == 100  # only the cache's rounding
    assert q4["kld_mean"] > q8["kld_mean"] > 10 * f32["kld_mean"]
    assert q4["bits_per_value"] == 4.5 and q4["kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 4.5 / 8
    assert f32["case"] == "ctx16,chunks3,corpus=corpus.txt" and f32["variant"] == "dequant_sdpa"

    again = quality_table(model, ["f32", "q8_0", "q4_0"], corpus, ctx=16, chunks=3, cache_root=tmp_path)
    assert "from cache" in capsys.readouterr().err
    assert again == rows

    cache = ReferenceCache.for_run(model, hashlib.sha256(TEXT.encode()).hexdigest(),
                                   16, 8, None, tmp_path)
    path = cache.path(1)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x55
    path.write_bytes(bytes(blob))
    third = quality_table(model, ["f32", "q8_0", "q4_0"], corpus, ctx=16, chunks=3, cache_root=tmp_path)
    err = capsys.readouterr().err
    assert "unusable (payload checksum mismatch)" in err and "chunk 2/3 (computed" in err
    assert third == rows


def test_asymmetric_and_layered_policies_and_records(tiny, tmp_path):
    model, corpus = tiny
    asym = parse_kv_policy(k="q8_0", v="q4_0", n_layers=model.config.n_layers)
    rows = quality_table(model, [asym, "q4_0,first1=q8_0"], corpus, ctx=16, chunks=2, cache_root=tmp_path,
                         model_name="tiny.gguf", progress=False)
    layered = parse_kv_policy("q4_0,first1=q8_0", n_layers=model.config.n_layers).spec
    assert [r["kv"] for r in rows] == ["k=q8_0,v=q4_0", layered]
    records = quality_records(rows)
    assert len(records) == 2 * len(METRICS)
    by_metric = {r["metric"]: r for r in records if r["format"] == "k=q8_0,v=q4_0"}
    assert set(by_metric) == set(METRICS)
    assert by_metric["same_top_pct"]["direction"] == "higher" and by_metric["kld_mean"]["direction"] == "lower"
    assert by_metric["kld_mean"]["samples"] == pytest.approx(rows[0]["kld_samples"])
    assert len(by_metric["kld_mean"]["samples"]) == 14 and by_metric["kld_p99"]["samples"] == []
    assert by_metric["kld_mean"]["op"] == "quality" and by_metric["kld_mean"]["backend"] == "torch"
    assert by_metric["kld_mean"]["case"] == "ctx16,chunks2,corpus=corpus.txt,model=tiny.gguf"


def test_kld_samples_subsample_is_seeded_and_ordered():
    values = torch.arange(10000, dtype=torch.float64)
    a, b = kld_samples(values), kld_samples(values)
    assert a == b and len(a) == 4096 and a == sorted(a) and len(set(a)) == 4096
    assert kld_samples(values[:100]) == values[:100].tolist()


def test_bad_requests(tiny, tmp_path):
    model, corpus = tiny
    with pytest.raises(UserError, match="longer than the model"):
        quality_table(model, ["q8_0"], corpus, ctx=128, chunks=1, cache_root=tmp_path)
    with pytest.raises(UserError, match="no KV policy"):
        quality_table(model, [], corpus, ctx=16, chunks=1, cache_root=tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(UserError, match="fewer than one chunk"):
        quality_table(model, ["q8_0"], short, ctx=16, chunks=1, cache_root=tmp_path)
