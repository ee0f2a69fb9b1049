"""`quantbench throughput` on a tiny random model: rows, columns, records, policy lists, errors."""
import json

import pytest
import torch

from quantbench.harness import results, throughput
from quantbench.harness.cli import main
from quantbench.harness.model import ModelConfig, load_model

CONFIG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, dim=64, hidden_dim=96, vocab_size=300,
                     max_seq_len=64, name="tiny")


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(CONFIG.to_dict()))
    return str(path)


def test_throughput_command(config_file, capsys):
    code = main(["throughput", "--config", config_file, "--kv", "none,f16,bf16,last1=f16", "-p", "8", "-n", "4",
                 "-d", "0,4", "-r", "2", "-o", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 * 2 * 2
    assert {(r["kv"], r["test"], r["depth"]) for r in rows} == {
        (kv, t, d) for kv in ("none", "f16", "bf16,last1=f16") for t in ("pp8", "tg4") for d in (0, 4)}
    for r in rows:
        assert r["tok/s"] > 0 and r["p10"] <= r["tok/s"] <= r["p90"]
        assert 0 < r["attn %"] < 100 and 0 < r["matmul %"] < 100 and 0 < r["write %"] < 100
        assert abs(r["write %"] + r["attn %"] + r["matmul %"] + r["rest %"] - 100) < 0.5
        if r["test"].startswith("tg") and not torch.cuda.is_available():
            assert r["graph tok/s"] == "unavailable: no CUDA device"
    assert [r["bits/value"] for r in rows if r["kv"] == "f16"][0] == 16
    stored = results.read_records(results.results_dir())
    assert {(r["op"], r["metric"], r["direction"]) for r in stored} == {
        ("prefill", "prefill_tok_s", "higher"), ("decode", "decode_tok_s", "higher"),
        ("prefill", "attn_share", "lower"), ("decode", "attn_share", "lower"),
        ("prefill", "cache_write_share", "lower"), ("decode", "cache_write_share", "lower")}
    decode = [r for r in stored if r["op"] == "decode" and r["format"] == "bf16,last1=f16" and r["case"] == "n4,d4"]
    assert {r["metric"] for r in decode} == {"decode_tok_s", "attn_share", "cache_write_share"}
    assert all(r["backend"] == "torch" and r["variant"] == "auto" for r in decode)
    assert len(next(r for r in decode if r["metric"] == "decode_tok_s")["samples"]) == 2


def test_shares_come_from_timed_sections():
    model = load_model(config=CONFIG)
    cache = model.new_cache(1, 16, kv="f16")
    steps = torch.randint(CONFIG.vocab_size, (1, 6))
    timing, shares = throughput.time_decode(model, cache, steps, 0, repetitions=2)
    assert len(timing.samples_s) == 2 and all(s > 0 for s in timing.samples_s)
    assert set(shares) == {"cache_write", "attention", "matmul"} and 0 < sum(shares.values()) < 1


@pytest.mark.parametrize("argv, message", [
    (["-p", "x"], "-p"), (["-n", "-3"], "-n"), (["--kv", "nosuch"], "nosuch"), (["-r", "0"], "-r"),
    (["-d", "100"], "context"), (["--attn", "nosuch"], "attention backend"),
])
def test_bad_arguments(config_file, capsys, argv, message):
    assert main(["throughput", "--config", config_file, "-p", "4", "-n", "2", "-r", "1", *argv]) == 2
    assert message in capsys.readouterr().err
