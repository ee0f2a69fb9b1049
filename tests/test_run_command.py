"""`quantbench run` wiring: every part prints its table and stores its records; bad --parts is named.

The parts run here on a tiny random model and one small kernel case, so the test checks the
plumbing; the real sizes are what `quantbench run` measures on the embedded model."""
import pytest
from model_helpers import random_hf_weights, tiny_hf_config, write_gguf

from quantbench.harness import results
from quantbench.harness.cli import main
from quantbench.harness.commands import run as run_command
from quantbench.harness.model import load_model
from quantbench.kernels import registry


@pytest.fixture
def small_run(monkeypatch, tmp_path):
    cfg = tiny_hf_config(max_position_embeddings=256)
    write_gguf(tmp_path / "tiny.gguf", cfg, random_hf_weights(cfg))
    monkeypatch.setattr(run_command, "load_model", lambda: load_model(tmp_path / "tiny.gguf"))
    monkeypatch.setattr(run_command, "QUALITY_CTX", 64)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the interpreter is too slow to time
    registry.load_all()
    for op in registry.OPS.values():  # one small kernel case: dequantize q4_0 at dim 64
        monkeypatch.setattr(op, "in_run", op.name == "dequantize")
    monkeypatch.setattr(registry.OPS["dequantize"], "run_formats", ("q4_0",))
    monkeypatch.setattr(registry.OPS["dequantize"], "run_filter", lambda case: case.dim == 64)
    monkeypatch.setattr(run_command, "QUALITY_SKIP", ("f32", "bf16", "turbo2_tcq", "turbo3_tcq", "turbo4"))
    monkeypatch.setattr(run_command, "THROUGHPUT_KV", "f16,turbo3")


def test_every_part_prints_and_stores(small_run, capsys, monkeypatch):
    monkeypatch.setattr(run_command.throughput, "run_throughput",
                        _short_throughput(run_command.throughput.run_throughput))
    assert main(["run", "--budget", "0.01", "--chunks", "1", "-o", "json"]) == 0
    stored = results.read_records(results.results_dir())
    ops = {r["op"] for r in stored}
    assert {"format_quality", "dequantize", "quality", "prefill", "decode"} <= ops
    kv = {r["format"] for r in stored if r["op"] == "quality"}
    assert {"f16", "q8_0", "q4_0", "turbo3", "turbo2"} <= kv and "bf16" not in kv
    assert all(r["command"].startswith("quantbench run") for r in stored)


def _short_throughput(real):
    def run(model, policies, n_prompt, n_gen, depths, repetitions, attn):
        return real(model, policies, [8], [2], [0], 1, attn)
    return run


def test_unknown_part_is_named(capsys):
    assert main(["run", "--parts", "formats,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_table_output_folds_unavailable_variants_and_ends_with_a_summary(small_run, capsys, monkeypatch):
    monkeypatch.setattr(run_command.throughput, "run_throughput",
                        _short_throughput(run_command.throughput.run_throughput))
    assert main(["run", "--budget", "0.01", "--parts", "kernels,quality,throughput", "--no-store"]) == 0
    out = capsys.readouterr().out
    kernel_table = out[out.index("Kernels: dequantize"):out.index("KV-cache quality")]
    unavailable = [v for v in registry.variants(op="dequantize", format="q4_0") if v.availability()]
    if unavailable:  # e.g. triton and cuda without a GPU: one line per backend, no rows
        assert "unavailable here:" in kernel_table
        assert "| unavailable" not in kernel_table
    summary = out[out.index("What this run found"):]
    assert "Pareto front" in summary and "Fastest variant per op and format" in summary
    assert "dequantize: q4_0 " in summary
    assert "Where decode time goes:" in summary and "turbo3 tg2 at depth 0" in summary


def test_full_shows_a_row_per_unavailable_variant(small_run, capsys):
    assert main(["run", "--budget", "0.01", "--parts", "kernels", "--full", "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "unavailable here:" not in out
    unavailable = [v for v in registry.variants(op="dequantize", format="q4_0") if v.availability()]
    assert out.count("| unavailable") == len(unavailable)  # one case each
