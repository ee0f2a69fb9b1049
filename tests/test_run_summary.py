"""harness/run_summary.py on hand-made rows: folding, the Pareto front, fastest variants, decode time."""
from quantbench.harness import run_summary


def _kernel(fmt, backend, variant, shape, time_us, status="ok"):
    return {"op": "gemv", "format": fmt, "backend": backend, "variant": variant, "shape": shape,
            "time_us": time_us if status == "ok" else None, "status": status}


def test_unavailable_rows_fold_into_one_line_per_backend_and_reason():
    rows = [_kernel("q4_0", "numba", "fused", "a", 5.0),
            _kernel("q4_0", "triton", "tiled", "a", None, "unavailable: no CUDA device"),
            _kernel("q8_0", "triton", "tiled", "a", None, "unavailable: no CUDA device"),
            _kernel("q8_0", "cuda", "const", "a", None, "unavailable: numba-cuda not installed"),
            _kernel("q8_0", "numba", "fused", "a", None, "failed: wrong result")]
    kept, lines = run_summary.fold_unavailable(rows)
    assert [r["status"] for r in kept] == ["ok", "failed: wrong result"]
    assert lines == ["triton: 2 cases of 1 variants (tiled) unavailable: no CUDA device",
                     "cuda: 1 cases of 1 variants (const) unavailable: numba-cuda not installed"]


def test_pareto_front_keeps_only_formats_no_cheaper_one_beats():
    rows = [{"kv": "a", "bits_per_value": 4.5, "kld_mean": 0.05}, {"kv": "b", "bits_per_value": 3.25, "kld_mean": 0.2},
            {"kv": "c", "bits_per_value": 4.5, "kld_mean": 0.3}, {"kv": "d", "bits_per_value": 8.5, "kld_mean": 0.06},
            {"kv": "e", "bits_per_value": 8.5, "kld_mean": 0.001}, {"kv": "f", "bits_per_value": 2, "kld_mean": None}]
    assert [r["kv"] for r in run_summary.pareto_front(rows)] == ["b", "a", "e"]


def test_fastest_variant_is_compared_on_the_cases_all_variants_ran():
    rows = [_kernel("q4_0", "numba", "fused", "small", 2.0), _kernel("q4_0", "numba", "fused", "large", 100.0),
            _kernel("q4_0", "torch", "int4", "large", 50.0), _kernel("q8_0", "numba", "fused", "small", 3.0)]
    assert run_summary.fastest_variants(rows) == ["gemv: q4_0 torch/int4, 2.0x the slowest"]  # q8_0: one variant


def test_decode_time_reads_the_deepest_decode_rows():
    rows = [{"kv": "f16", "test": "tg8", "depth": 0, "tok/s": 20.0, "write %": 1.0, "attn %": 2.0, "matmul %": 90.0,
             "rest %": 7.0},
            {"kv": "f16", "test": "tg8", "depth": 1024, "tok/s": 16.0, "write %": 4.0, "attn %": 12.0,
             "matmul %": 74.0, "rest %": 10.0},
            {"kv": "q8_0", "test": "tg8", "depth": 1024, "tok/s": 15.2, "write %": 3.0, "attn %": 14.0,
             "matmul %": 73.0, "rest %": 10.0},
            {"kv": "q8_0", "test": "pp128", "depth": 1024, "tok/s": 300.0}]
    assert run_summary.decode_time(rows) == [
        "f16 tg8 at depth 1024: 16.0 tok/s (1.00x f16); write % 4.0, attn % 12.0, matmul % 74.0, rest % 10.0",
        "q8_0 tg8 at depth 1024: 15.2 tok/s (0.95x f16); write % 3.0, attn % 14.0, matmul % 73.0, rest % 10.0"]
