"""Every registered quantize / dequantize variant of the block formats against the torch reference.

Quantize must be bit-exact: every Packed field equal, bit for bit.

Dequantize tolerance: zero. Every product q * d is exact in float32 (an integer of at most 8 bits
times an fp16 scale of 11 significant bits needs at most 19 bits), so q8_0 and q4_0 decode without
rounding, and q4_1's one rounding (q * d + m) is the same correctly rounded addition in every
variant (also when fused into an FMA, since the product is exact); the rotated formats' kernels
run the reference's butterflies in the reference's order, so each of their roundings is the same
too; the conversion to a float16 or bfloat16 output then rounds identical float32 values
identically. Every variant also passes the op's own float tolerance (kernels/codecs/spec.py). One exception: Triton's
interpreter converts float32 to bfloat16 by truncation (the GPU rounds to nearest even, cvt.rn),
so interpreted Triton bfloat16 outputs get the op's own float tolerance (kernels/codecs/spec.py) instead.

Triton variants run in the interpreter on CPU tensors (small shapes: it is slow), in a child
process: the interpreter works only if TRITON_INTERPRET=1 was set before triton was first
imported, and in a whole test session another module may import triton before this one runs.
The child (tests/emulation.py) runs this file with only the Triton variants as parameters.
"""
import os

import pytest
import torch
from emulation import assert_succeeded, output_tail, run_emulated

from quantbench.kernels import registry
from quantbench.kernels.checks import check_packed_equal
from quantbench.kernels.registry import Case, variants

CHILD = "QUANTBENCH_TRITON_CHILD"
IN_CHILD = os.environ.get(CHILD) == "1"
FORMATS = ("q8_0", "q4_0", "q4_1")
ROTATED = ("q8_0_rot", "q4_0_rot:group=32", "q4_0_rot:signs=0")
SHAPES = ((7, 128), (2, 3 * 64 * 32))  # 4 blocks per row; 192 blocks (several Triton programs)


def block_variants(op, specs=FORMATS):
    """Parameters: the Triton variants in the child process, every other variant here."""
    found = [(spec, v) for spec in specs for v in variants(op=op, format=spec) if (v.backend == "triton") == IN_CHILD]
    return [pytest.param(spec, v, id=f"{spec}-{v.backend}-{v.name}") for spec, v in found]


def assert_bitwise_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got.cpu().contiguous().view(torch.uint8), want.contiguous().view(torch.uint8))


@pytest.mark.parametrize("op", ["quantize", "dequantize"])
def test_every_backend_is_registered(op):
    for fmt in FORMATS:
        assert {v.backend for v in variants(op=op, format=fmt)} >= {"torch", "numba", "triton"}, fmt
    for spec in ROTATED:
        assert {v.backend for v in variants(op=op, format=spec)} >= {"torch", "numba"}, spec


@pytest.mark.emulated
def test_triton_variants_in_an_interpreter_process():
    triton = [v for op in ("quantize", "dequantize") for fmt in FORMATS
              for v in variants(op=op, format=fmt) if v.backend == "triton"]
    assert triton
    expected = 3 * len(triton)  # quantize: 3 tests per variant; dequantize: 3 output dtypes
    child = run_emulated("triton", test_file=__file__, pytest_args=["-k", "not interpreter_process"],
                         env={CHILD: "1"})
    assert_succeeded(child)
    passed = [line for line in child.stdout.splitlines() if "-triton-" in line and "PASSED" in line]
    assert len(passed) == expected, output_tail(child)


@pytest.mark.parametrize("fmt, v", block_variants("quantize") + block_variants("quantize", ROTATED))
@pytest.mark.parametrize("rows, dim", SHAPES[:1])
def test_quantize_is_bit_exact(fmt, v, rows, dim):
    case = Case.make("quantize", fmt, rows=rows, dim=dim, seed=11)
    out = v.build(case)()
    reference = registry.get_op("quantize").reference(case)
    assert out.format == reference.format
    check_packed_equal(case, out, reference)


@pytest.mark.parametrize("fmt, v", block_variants("quantize"))
def test_quantize_many_blocks_is_bit_exact(fmt, v):
    case = Case.make("quantize", fmt, rows=SHAPES[1][0], dim=SHAPES[1][1], seed=13)
    check_packed_equal(case, v.build(case)(), registry.get_op("quantize").reference(case))


@pytest.mark.parametrize("fmt, v", block_variants("dequantize") + block_variants("dequantize", ROTATED))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dequantize_is_exact(fmt, v, dtype):
    rows, dim = SHAPES[1] if dtype == "float32" and "rot" not in fmt else SHAPES[0]
    case = Case.make("dequantize", fmt, rows=rows, dim=dim, dtype=dtype, seed=12)
    op = registry.get_op("dequantize")
    out, reference = v.build(case)(), op.reference(case)
    op.check(case, out, reference)
    if not (v.backend == "triton" and dtype == "bfloat16" and registry.interpreting_triton()):
        assert_bitwise_equal(out, reference)


def edge_inputs(dim=64):
    """Rows of edge-case blocks: zeros of both signs, exact .5 ties, huge and tiny values, a
    negative largest magnitude, +a/-a ties."""
    g = torch.Generator().manual_seed(3)
    rows = [
        [0.0] * 32 + [-0.0] * 32,
        [-0.0, 0.0] * 16 + [0.0] * 8 + [-0.0] * 24,
        ([127.0, 0.5, -0.5, 2.5, -2.5, 126.5] * 6)[:32] + ([-8.0, 0.5, -0.5, 6.5, 7.5, -7.5] * 6)[:32],
        ([0.0, 15.0, 0.5, 14.5, 7.5] * 7)[:32] + ([1.0, -3.0, 2.0, 0.25] * 8),
        [3.0, 1.0, -3.0, 2.0] * 8 + [-3.0, 1.0, 3.0, 2.0] * 8,
        [5.0] * 64,
    ]
    x = torch.tensor([r[:dim] for r in rows], dtype=torch.float32)
    huge = (torch.rand(3, dim, generator=g) * 5e4 + 1e4) * torch.where(torch.rand(3, dim, generator=g) < 0.5, -1, 1)
    tiny = torch.randn(3, dim, generator=g) * 1e-7
    return torch.cat([x, huge, tiny])


@pytest.fixture
def edge_case_inputs(monkeypatch):
    """Make the quantize op hand every variant the edge-case rows instead of Gaussian ones."""
    x = edge_inputs()
    monkeypatch.setattr(registry.get_op("quantize"), "make_inputs", lambda case: {"x": x.to(case.device)})
    return x


@pytest.mark.parametrize("fmt, v", block_variants("quantize") + block_variants("quantize", ROTATED))
def test_quantize_edge_cases_are_bit_exact(fmt, v, edge_case_inputs):
    case = Case.make("quantize", fmt, rows=edge_case_inputs.shape[0], dim=edge_case_inputs.shape[1])
    check_packed_equal(case, v.build(case)(), case.format_obj.encode(edge_case_inputs))


@pytest.mark.parametrize("backend", ["numba", "triton"])
def test_unrotated_kernels_do_not_claim_the_rotated_formats(backend):
    for op in ("quantize", "dequantize"):
        for v in variants(op=op, backend=backend):
            if v.supports("q8_0"):
                assert not v.supports("q8_0_rot") and not v.supports("q4_0_rot"), v.key


def test_triton_variants_declare_gpu_needs():
    for v in variants(backend="triton"):
        if set(v.format_names() or ()) == set(FORMATS):
            assert v.needs == ("triton",) and v.device == "cuda"
