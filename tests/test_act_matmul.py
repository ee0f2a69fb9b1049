"""The matmuls on per-token int8 activations (W8A8: torch int_mm and numba w8a8 on int8 weights; W4A8:
numba w4a8 on q4_0 / q4_1 weights): the activation codes bit for bit the int8 format's, the W8A8 dot
products exact integers, every variant within the op's check at odd shapes, where int_mm cannot run,
the byte model, and bench timing them beside the dense baseline."""
import numpy as np
import pytest
import torch

from quantbench.harness.bench import run_bench, select
from quantbench.harness.timing import TimingConfig
from quantbench.kernels import formats
from quantbench.kernels.formats.int_rows import quantize_rows
from quantbench.kernels.matmul.numba_token_int8_loops import quantize_tokens, quantize_tokens_parallel, w8a8
from quantbench.kernels.matmul.spec import QuantizedActivations
from quantbench.kernels.matmul.torch_int_mm import int_mm_problem
from quantbench.kernels.registry import Case, Unavailable, find_variant, get_op, variants


@pytest.mark.parametrize("code_dtype", [np.float32, np.int8])  # w8a8's float codes, w4a8's int8 ones
def test_the_numba_activation_codes_are_the_int8_formats(code_dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 96, generator=gen) * torch.logspace(-4, 4, 6)[:, None]
    x[0, :4] = torch.tensor([127.0, 2.5, -3.5, 0.5])  # d = 1: ties go to even
    x[1] = 0
    want_codes, want_scales = quantize_rows(x, 127)
    for quantize in (quantize_tokens, quantize_tokens_parallel):
        codes, scales = np.empty((6, 96), code_dtype), np.empty(6, np.float32)
        quantize(x.numpy(), codes, scales)
        assert torch.equal(torch.from_numpy(codes.astype(np.float32)), want_codes.float())
        assert torch.equal(torch.from_numpy(scales), want_scales)
    assert want_codes[0, :4].tolist() == [127, 2, -4, 0]


@pytest.mark.parametrize("m", [1, 2, 3, 8])
def test_w8a8_dot_products_are_exact_integers(m):
    gen = torch.Generator().manual_seed(m)
    x_codes = torch.randint(-127, 128, (m, 96), generator=gen).float()
    w_codes = torch.randint(-127, 128, (13, 96), generator=gen).to(torch.int8)
    x_scales, w_scales = torch.rand(m, generator=gen), torch.rand(13, generator=gen)
    out = np.empty((m, 13), np.float32)
    w8a8(x_codes.numpy(), x_scales.numpy(), w_codes.numpy(), w_scales.numpy(), out)
    isum = (x_codes.long() @ w_codes.long().T).float()  # |isum| < 2^24: exact in float32
    assert torch.equal(torch.from_numpy(out), isum * (x_scales[:, None] * w_scales[None, :]))


@pytest.mark.parametrize("op, fmt, backend, name", [
    ("gemm", "int8", "numba", "w8a8"), ("gemm", "int8", "torch", "int_mm"), ("gemv", "int8", "numba", "w8a8"),
    ("gemv", "int8", "torch", "int_mm"), ("gemv", "q4_0", "numba", "w4a8"), ("gemv", "q4_1", "numba", "w4a8"),
    ("gemm", "q4_1", "numba", "w4a8")])
@pytest.mark.parametrize("m, n, k", [(3, 13, 64), (5, 24, 1056)])
def test_variants_pass_the_op_check_at_odd_shapes(op, fmt, backend, name, m, n, k):
    case = Case.make(op, fmt, m=m, n=n, k=k)
    try:
        out = find_variant(op, fmt, backend, name).build(case)()
    except Unavailable as exc:  # int_mm on a GPU, below 17 rows
        pytest.skip(str(exc))
    assert isinstance(out, QuantizedActivations) and out.activation_format == "int8"
    spec = get_op(op)
    spec.check(case, out, spec.reference(case))
    # and they are not the float reference: the activations were quantized
    assert not torch.allclose(out.y.double(), spec.reference(case).y, rtol=0, atol=1e-6)


def test_int_mm_says_where_it_cannot_run():
    assert int_mm_problem(1, 1536, 576, "cpu") is None
    assert "more than 16 activation rows" in int_mm_problem(16, 1536, 576, "cuda")
    assert "multiples of 8" in int_mm_problem(32, 1536, 100, "cuda:0")
    assert int_mm_problem(17, 1536, 576, "cuda") is None


def test_the_variants_are_discovered_for_their_formats():
    assert {v.name for v in variants(op="gemm", format="int8")} >= {"dequant_matmul", "int_mm", "w8a8"}
    assert {v.name for v in variants(op="gemv", format="q4_0")} >= {"w4a8", "int8_dot", "fused_fma"}
    assert not variants(op="gemv", format="q8_0", name="w4a8")


def test_bytes_count_int8_weights_with_their_scales():
    case = Case.make("gemm", "int8", m=4, n=32, k=64)
    assert get_op("gemm").bytes(case) == 32 * 64 + 4 * 32 + 4 * 4 * (64 + 32)
    assert formats.get("int4").bytes_for(32, 64) == 32 * 32 + 4 * 32


def test_bench_times_them_beside_the_baseline():
    pairs = select("gemm", ["int8"], None, ["dequant_matmul", "int_mm", "w8a8"])
    results = run_bench("gemm", pairs, lambda spec: [Case.make("gemm", spec, m=32, n=32, k=64)],
                        TimingConfig(budget_s=0.01, min_repeats=3, warmup=1, rounds=1), progress=False)
    assert {r.variant.name: r.status for r in results} == {"dequant_matmul": "ok", "int_mm": "ok", "w8a8": "ok"}
    assert all(r.speedup and r.gbps for r in results)
