"""The Triton variants of llama.cpp's k-quants (kernels/codecs/kquant_triton.py: dequantize;
kernels/matmul/kquant_triton.py: fused gemv / gemm) against the formats' own decode and the matmul
reference.

dequantize must equal the torch decode bit for bit, in float32 and float16, on Gaussian rows and on
llama.cpp's own encodings of the fixture inputs (tests/fixtures/kquant_reference.npz: its edge blocks
of zeros, constants and single outliers included). The matmuls get the op's float tolerance.

As in tests/test_micro_triton_gpu.py, the kernels run in Triton's interpreter on CPU tensors in a
child process that runs this file with only the interpreted tests (tests/emulation.py), on small
shapes: 3 rows of 512 values (6 super-blocks: a full and a partial 4-block program); m = 1 and 3
(GEMV) and 20 (two row tiles, the second partial), n = 40 (a partial 32-column tile), k = 512 and
256. The compile check (tests/test_compile_check.py) compiles them for sm_90.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from emulation import assert_succeeded, output_tail, run_emulated

from quantbench.kernels import formats, registry
from quantbench.kernels.registry import Case, variants

CHILD = "QUANTBENCH_KQUANT_TRITON_CHILD"
IN_CHILD = os.environ.get(CHILD) == "1"
K_QUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
MATMUL_SHAPES = {"gemv": ((1, 40, 512), (3, 40, 512)), "gemm": ((20, 40, 256),)}
OPS = ("dequantize", *MATMUL_SHAPES)
FIXTURES = Path(__file__).parent / "fixtures" / "kquant_reference.npz"


def triton_variant(op, spec):
    found = variants(op=op, format=spec, backend="triton")
    assert len(found) == 1, (op, spec, [v.key for v in found])
    return found[0]


def test_every_k_quant_has_one_triton_variant_per_op():
    for op in OPS:
        for spec in K_QUANTS:
            v = triton_variant(op, spec)
            assert v.needs == ("triton",) and v.device == "cuda", v.key
        assert not triton_variant(op, "q4_k").supports("q4_0")


@pytest.mark.emulated
def test_k_quant_triton_variants_in_an_interpreter_process():
    expected = len(K_QUANTS) * (2 + len(MATMUL_SHAPES))
    child = run_emulated("triton", test_file=__file__, pytest_args=["-k", "interpreted"], env={CHILD: "1"})
    assert_succeeded(child)
    passed = [line for line in child.stdout.splitlines() if "interpreted" in line and "PASSED" in line]
    assert len(passed) == expected, output_tail(child)


if IN_CHILD:  # the parent runs these through test_k_quant_triton_variants_in_an_interpreter_process
    from quantbench.kernels.codecs.kquant_triton import dequantize_launcher

    @pytest.mark.parametrize("spec", K_QUANTS)
    def test_interpreted_dequantize_is_the_decode_bit_for_bit(spec):
        op = registry.get_op("dequantize")
        for dtype in ("float32", "float16"):
            case = Case.make("dequantize", spec, rows=3, dim=512, dtype=dtype, seed=12)
            out, reference = triton_variant("dequantize", spec).build(case)(), op.reference(case)
            op.check(case, out, reference)
            assert torch.equal(out.view(torch.uint8), reference.view(torch.uint8)), (spec, dtype)

    @pytest.mark.parametrize("spec", K_QUANTS)
    def test_interpreted_dequantize_decodes_llama_cpps_blocks(spec):
        fmt = formats.get(spec)
        with np.load(FIXTURES, allow_pickle=False) as data:
            shape, blocks = data["inputs"].shape, data[spec].tobytes()
        packed = fmt.from_gguf_bytes(blocks, shape)
        out = torch.empty(shape)
        dequantize_launcher(fmt, packed, out)()
        want = fmt.decode(packed)
        assert torch.equal(out.view(torch.int32), want.view(torch.int32)), spec

    @pytest.mark.parametrize("op", MATMUL_SHAPES)
    @pytest.mark.parametrize("spec", K_QUANTS)
    def test_interpreted_matmul_matches_the_reference(op, spec):
        o = registry.get_op(op)
        for m, n, k in MATMUL_SHAPES[op]:
            case = Case.make(op, spec, m=m, n=n, k=k, seed=21)
            o.check(case, triton_variant(op, spec).build(case)(), o.reference(case))


@pytest.mark.cpu_only
def test_without_gpu_or_interpreter_the_variants_say_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cases = [Case.make("dequantize", "q4_k", rows=2, dim=256)] + [Case.make(op, "q6_k", m=1, n=32, k=256)
                                                                  for op in MATMUL_SHAPES]
    for case in cases:
        with pytest.raises(registry.Unavailable,
                           match=r"unavailable: no CUDA device \(TRITON_INTERPRET=1 runs it in the interpreter\)"):
            triton_variant(case.op, case.format).build(case)
