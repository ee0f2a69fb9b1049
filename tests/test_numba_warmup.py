"""`quantbench run`'s compile pass: which numba variants it compiles, on which case, and that a
failing one is left to the timed pass."""
from quantbench.harness import numba_warmup
from quantbench.kernels import registry


def _ops(*names):
    registry.load_all()
    return [registry.OPS[name] for name in names]


def test_jobs_are_the_numba_variants_of_the_run_grouped_by_kernel():
    groups = numba_warmup.jobs(_ops("attn_decode"))
    op = registry.OPS["attn_decode"]
    names = {v.name for v in registry.variants(op="attn_decode", backend="numba")}
    assert groups and all(len({job[0] for job in group}) == 1 for group in groups)
    for group in groups:
        for name, op_name, spec, dims, _ in group:
            assert op_name == "attn_decode" and name in names and spec in op.run_formats
            assert op.run_filter(registry.Case(op_name, spec, dims))  # one of the run's own cases
    formats = {job[2] for group in groups for job in group}
    assert "f32" not in formats and {"q8_0", "turbo3"} <= formats  # floats have no numba variant


def test_compile_group_calls_each_variant_and_leaves_failures_to_the_timed_pass():
    (group, *_) = [g for g in numba_warmup.jobs(_ops("dequantize")) if g[0][0] == "parallel"]
    q4_0 = [job for job in group if job[2] == "q4_0"]
    unknown = [("no-such-variant", *q4_0[0][1:])]
    assert numba_warmup.compile_group(q4_0 + unknown) == 1


def test_warm_runs_in_worker_processes_and_not_on_one_core(capsys):
    assert numba_warmup.warm(_ops("fwht"), workers=1) == 0.0
    assert capsys.readouterr().err == ""
    assert numba_warmup.warm(_ops("fwht"), workers=2) > 0
    err = capsys.readouterr().err
    pairs = sum(len(group) for group in numba_warmup.jobs(_ops("fwht")))  # parallel and registers, on f32
    assert pairs == 2
    assert "compiling the numba variants in 2 processes" in err and f"{pairs} variant-format pairs" in err
