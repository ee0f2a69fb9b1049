import pytest
import torch

from quantbench.harness.bench import run_bench, select, to_records
from quantbench.harness.timing import TimingConfig
from quantbench.kernels import registry
from quantbench.kernels.registry import Case, Variant, variants

FAST = TimingConfig(budget_s=0.01, min_repeats=3, warmup=1)


def small_cases(spec):
    return [Case.make("fwht", spec, rows=64, dim=64)]


@pytest.fixture
def extra_variant():
    """Register a temporary variant; removed again after the test."""
    added = []

    def add(factory, name, needs=()):
        v = Variant("fwht", "test", name, factory, None, needs)
        registry.VARIANTS.append(v)
        added.append(v)
        return v

    yield add
    for v in added:
        registry.VARIANTS.remove(v)


def test_every_op_has_a_torch_reference_variant():
    registry.load_all()  # registers the ops: run alone, this module has imported none
    assert registry.OPS
    for op in registry.OPS.values():
        assert variants(op=op.name, backend=op.baseline[0], name=op.baseline[1]), op.name


def test_bench_derives_bandwidth_and_speedup_from_declared_bytes():
    results = run_bench("fwht", select("fwht", None, ["torch"]), small_cases, FAST, progress=False)
    (r,) = results
    assert r.status == "ok"
    assert r.bytes == 2 * 64 * 64 * 4
    assert r.gbps == pytest.approx(r.bytes / r.timing.median / 1e9)
    assert 0 < r.pct_peak
    assert r.speedup == 1.0  # the baseline against itself
    metrics = {rec["metric"] for rec in to_records(results)}
    assert metrics == {"time", "gbps", "pct_peak", "copy_gbps"}


def test_wrong_variant_is_reported_failed_not_timed(extra_variant):
    def wrong(case):
        x = case.inputs()["x"]
        return lambda: x * 1.01

    extra_variant(wrong, "wrong")
    results = run_bench("fwht", select("fwht", None, ["test"]), small_cases, FAST, progress=False)
    assert results[0].status.startswith("failed: wrong result")
    assert results[0].timing is None


@pytest.mark.cpu_only
def test_unavailable_variant_reports_why(extra_variant, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    extra_variant(lambda case: (lambda: None), "needs_gpu", needs=("cuda",))
    results = run_bench("fwht", select("fwht", None, ["test"]), small_cases, FAST, progress=False)
    assert results[0].status == "unavailable: no CUDA device"
    with pytest.raises(registry.Unavailable, match="unavailable: no CUDA device"):
        results[0].variant.build(small_cases("f32")[0])


@pytest.mark.cpu_only
def test_triton_without_gpu_or_interpreter_is_unavailable(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    v = Variant("fwht", "triton", "x", lambda case: None, None, ("triton",), "cuda")
    assert "no CUDA device" in v.availability()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert v.availability() is None
    assert v.run_device() == "cpu"


@pytest.mark.cuda
def test_triton_with_a_gpu_is_available_and_runs_there(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    v = Variant("fwht", "triton", "x", lambda case: None, None, ("triton",), "cuda")
    assert v.availability() is None
    assert v.run_device() == "cuda"


def test_case_id_and_dims():
    case = Case.make("dequantize", "q4_0", rows=8, dim=64)
    assert case.rows == 8 and case.dim == 64
    assert case.id == "dequantize[q4_0](rows=8,dim=64,float32,cpu)"
    a, b = case.inputs()["x"], case.inputs()["x"]
    assert torch.equal(a, b)  # seeded


def test_unknown_op_is_clear():
    with pytest.raises(KeyError, match="unknown op 'nope'"):
        registry.get_op("nope")
