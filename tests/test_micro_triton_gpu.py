"""The Triton variants of the floating-point micro formats (kernels/codecs/micro_triton.py: dequantize;
kernels/matmul/micro_triton.py: fused gemv / gemm) against the formats' own decode and the matmul
reference. The variants checked are the registry's Triton ones for SPECS.

dequantize must equal the torch decode bit for bit: every code and scale is an exact float32, and
value * scale (nvfp4: value * (block scale * tensor scale)) is the reference's one rounding, done in
its order. Beyond the Gaussian cases, hand-made packed values hold every element code under every
block scale code (E8M0, E4M3; NaN and infinity codes, subnormal and overflowing products
included), compared NaN for NaN and bit for bit elsewhere; E8M0's code 255, which the encoder never
writes, is NaN as OCP MX defines it (torch's ldexp by 2^128 makes infinities of it). The matmuls
get the op's float tolerance.

As in tests/test_matmul_gpu.py, the kernels run in Triton's interpreter on CPU tensors in a child
process that runs this file with only the interpreted tests (tests/emulation.py), on small shapes:
7 rows of 96 values (a partial tile each way); m = 1 and 3 (GEMV), 20 (two row tiles, the second
partial), n = 40 (a partial 32-column tile), k = 96 (3 MX blocks, 6 nvfp4 blocks) and, for fp8,
k = 24 (a partial 16-weight chunk).
"""
import math
import os

import pytest
import torch
from emulation import assert_succeeded, output_tail, run_emulated

from quantbench.kernels import formats, registry
from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.fp8 import FP8Format
from quantbench.kernels.formats.minifloat import E2M1, pack_codes
from quantbench.kernels.formats.mx import MXFormat
from quantbench.kernels.formats.nvfp4 import NVFP4
from quantbench.kernels.registry import Case, variants

CHILD = "QUANTBENCH_MICRO_TRITON_CHILD"
IN_CHILD = os.environ.get(CHILD) == "1"
SPECS = ("fp8_e4m3", "fp8_e4m3:scale=tensor", "fp8_e5m2:scale=none", "mxfp8", "mxfp6", "mxfp6:element=e3m2",
         "mxfp4", "nvfp4", "nvfp4:scale=row", "mxfp4:rotate=1:group=32")
EVERY_CODE_SPECS = ("fp8_e4m3", "fp8_e5m2:scale=none", "mxfp8", "mxfp6", "mxfp6:element=e3m2", "mxfp4", "nvfp4",
                    "nvfp4:scale=row")
MATMUL_SHAPES = {"gemv": ((1, 40, 96), (3, 40, 96)), "gemm": ((20, 40, 96),)}
FP8_ODD_K = (1, 40, 24)  # the reference takes a k that is no multiple of 32 only below 32
OPS = ("dequantize", *MATMUL_SHAPES)


def triton_variant(op, spec):
    found = variants(op=op, format=spec, backend="triton")
    assert len(found) == 1, (op, spec, [v.key for v in found])
    return found[0]


def test_every_micro_format_has_one_triton_variant_per_op():
    for op in OPS:
        for spec in SPECS:
            v = triton_variant(op, spec)
            assert v.needs == ("triton",) and v.device == "cuda", v.key
        assert not triton_variant(op, "mxfp4").supports("q4_0")


@pytest.mark.emulated
def test_micro_triton_variants_in_an_interpreter_process():
    expected = len(SPECS) * (1 + len(MATMUL_SHAPES)) + len(EVERY_CODE_SPECS)
    child = run_emulated("triton", test_file=__file__, pytest_args=["-k", "interpreted"], env={CHILD: "1"})
    assert_succeeded(child)
    passed = [line for line in child.stdout.splitlines() if "interpreted" in line and "PASSED" in line]
    assert len(passed) == expected, output_tail(child)


def assert_same_values(got, want):
    """NaN where the reference has NaN, every other value bit for bit (signed zeros, infinities)."""
    got, want = got.cpu().reshape(-1), want.reshape(-1)
    assert got.dtype == want.dtype and got.numel() == want.numel()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan), f"{int((torch.isnan(got) != nan).sum())} NaNs differ"
    differ = got[~nan].view(torch.int32) != want[~nan].view(torch.int32)
    assert not bool(differ.any()), f"{int(differ.sum())} of {differ.numel()} values differ"


def every_code_packed(spec: str) -> Packed:
    """Every element code in each row, each row under its own block scale code (256 rows: every
    code of E8M0 and E4M3); fp8: the 256 codes under a second-level scale of 1, 0.37 (row) or none."""
    fmt = formats.get(spec)
    if isinstance(fmt, FP8Format):
        codes = torch.arange(256, dtype=torch.uint8).repeat(2, 1)
        scales = {} if fmt.scale == "none" else {"scales": torch.tensor([1.0, 0.37])}
        return Packed(fmt.spec, (2, 256), {"codes": codes, **scales})
    element = E2M1 if isinstance(fmt, NVFP4) else fmt.element
    dim = max(fmt.block, 1 << element.bits)
    codes = (torch.arange(dim) % (1 << element.bits)).to(torch.uint8).repeat(256, 1)
    blocks = codes.reshape(256, dim // fmt.block, fmt.block)
    scale_codes = torch.arange(256, dtype=torch.uint8)[:, None].expand(256, dim // fmt.block).contiguous()
    fields = {"codes": pack_codes(blocks, element.bits), "scales": scale_codes}
    if isinstance(fmt, NVFP4):
        row = torch.rand(256, generator=torch.Generator().manual_seed(5)) + 0.1
        fields["tensor_scale"] = row if fmt.scale == "row" else torch.tensor(0.37)
    return Packed(fmt.spec, (256, dim), fields)


if IN_CHILD:  # the parent runs these through test_micro_triton_variants_in_an_interpreter_process
    from quantbench.kernels.codecs.micro_triton import dequantize_launcher

    @pytest.mark.parametrize("spec", SPECS)
    def test_interpreted_dequantize_is_the_decode_bit_for_bit(spec):
        op = registry.get_op("dequantize")
        for dtype in ("float32", "float16"):
            case = Case.make("dequantize", spec, rows=7, dim=96, dtype=dtype, seed=12)
            out, reference = triton_variant("dequantize", spec).build(case)(), op.reference(case)
            op.check(case, out, reference)
            assert torch.equal(out.view(torch.uint8), reference.view(torch.uint8)), (spec, dtype)

    @pytest.mark.parametrize("spec", EVERY_CODE_SPECS)
    def test_interpreted_every_code_and_scale_decodes_as_the_format(spec):
        fmt = formats.get(spec)
        packed = every_code_packed(spec)
        out = torch.empty(packed.shape)
        dequantize_launcher(fmt, packed, out)()
        want = fmt.decode(packed)
        if isinstance(fmt, MXFormat):  # the row under E8M0's NaN code (see the module docstring)
            want[255] = math.nan
        assert_same_values(out, want)

    @pytest.mark.parametrize("op", MATMUL_SHAPES)
    @pytest.mark.parametrize("spec", SPECS)
    def test_interpreted_matmul_matches_the_reference(op, spec):
        shapes = MATMUL_SHAPES[op] + ((FP8_ODD_K,) if op == "gemv" and spec.startswith("fp8") else ())
        o = registry.get_op(op)
        for m, n, k in shapes:
            case = Case.make(op, spec, m=m, n=n, k=k, seed=21)
            o.check(case, triton_variant(op, spec).build(case)(), o.reference(case))


@pytest.mark.cpu_only
def test_without_gpu_or_interpreter_the_variants_say_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cases = [Case.make("dequantize", "mxfp4", rows=2, dim=32)] + [Case.make(op, "nvfp4", m=1, n=32, k=64)
                                                                  for op in MATMUL_SHAPES]
    for case in cases:
        with pytest.raises(registry.Unavailable,
                           match=r"unavailable: no CUDA device \(TRITON_INTERPRET=1 runs it in the interpreter\)"):
            triton_variant(case.op, case.format).build(case)
