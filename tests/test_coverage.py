"""The coverage matrix: every format an op's spec serves has a variant (a new format cannot be
left out of an op silently), `quantbench list --matrix` shows op x format x backend, and a format
added without kernels shows up as the gap it is."""
import json

import pytest

from quantbench.harness import coverage
from quantbench.harness.cli import main
from quantbench.kernels import formats, registry
from quantbench.kernels.formats.floats import F32


def test_every_format_an_op_serves_has_a_variant():
    assert coverage.uncovered() == []


def test_every_format_an_op_serves_has_a_cpu_variant():
    registry.load_all()
    for op in registry.OPS:
        for spec in coverage.op_formats(op):
            cpu = [v for v in registry.variants(op=op, format=spec) if v.device == "cpu"]
            assert cpu, f"{op}[{spec}]: no CPU variant"


def test_matrix_cli_rows_cover_every_op_format_and_backend(capsys):
    assert main(["list", "--matrix", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    registry.load_all()
    assert {(r["op"], r["format"]) for r in rows} == {(op, s) for op in registry.OPS for s in coverage.op_formats(op)}
    backends = coverage.backends()
    assert {"torch", "numba", "triton", "cuda"} <= set(backends)
    by_key = {(r["op"], r["format"]): r for r in rows}
    assert by_key[("quantize", "q4_0")]["torch"] == "yes: reference"
    assert by_key[("fwht", "f32")]["cuda"] == "-"


def test_matrix_says_why_a_gpu_variant_cannot_run(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr(registry.torch.cuda, "is_available", lambda: False)
    cell = next(c for c in coverage.cells() if (c.op, c.format, c.backend) == ("dequantize", "turbo2_tcq", "cuda"))
    assert cell.status == coverage.UNAVAILABLE and cell.reason == "no CUDA device"
    assert cell.text() == "unavailable: no CUDA device"


@pytest.fixture
def op_with_a_gap(monkeypatch):
    """An op that serves f32 and a newly registered format, with a variant for f32 only."""
    registry.load_all()

    @formats.register
    class Lonely(F32):
        name = "lonely_test_format"
        family = "lonely"

    op = registry.Op(name="gap_test", make_inputs=dict, reference=lambda case: None, bytes=lambda case: 0,
                     flops=lambda case: 0, default_cases=lambda spec: [], formats=lambda: ["f32", Lonely.name])
    monkeypatch.setitem(registry.OPS, op.name, op)
    monkeypatch.setattr(registry, "VARIANTS", list(registry.VARIANTS))
    registry.variant("gap_test", backend="torch", name="only_f32", formats=("f32",))(lambda case: lambda: None)
    yield op.name, Lonely.name
    del formats._REGISTRY[Lonely.name]


def test_a_format_served_without_a_variant_is_a_gap(op_with_a_gap, capsys):
    op, fmt = op_with_a_gap
    assert coverage.uncovered() == [(op, fmt)]
    assert main(["list", "--matrix", "-o", "csv"]) == 1
    captured = capsys.readouterr()
    assert f"{op}[{fmt}]" in captured.err
    assert f"{op},{fmt}," in captured.out and f"{op},f32," in captured.out
