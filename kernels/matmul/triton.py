"""Triton GPU variants of the weight matmuls `gemv` / `gemm` for q4_0 and q8_0 (interpreter-tested
on the CPU): `fused_fma` (decode in registers, float FMAs) and `int8_dot` (activations quantized
to q8_0 by the block quantizer of codecs/blocks_triton_jit.py, bit for bit the format's encoding, then
exact int32 block dot products). Kernels: kernels/matmul/triton_jit.py, imported in the factories.
"""
from __future__ import annotations

import torch

from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import variant

FORMATS = ("q4_0", "q8_0")
BN = 32  # output columns per program
MAX_BM = 16  # activation rows per program (GEMV: the next power of two of m)
QUANTIZE_BLOCKS_PER_PROGRAM = 64


def _rows_per_program(m: int) -> int:
    return min(MAX_BM, 1 << max(m - 1, 0).bit_length())


def _setup(case):
    x, packed = packed_weights(case)
    x = x.contiguous()
    m, n, k = x.shape[0], packed.shape[0], packed.shape[1]
    bm = _rows_per_program(m)
    grid = ((m + bm - 1) // bm, (n + BN - 1) // BN)
    y = torch.empty(m, n, dtype=torch.float32, device=x.device)
    return x, packed, y, (m, n, k), bm, grid


def _fused(case):
    """decode the block in registers, float32 FMAs into a [rows x 32] tile per program"""
    from quantbench.kernels.matmul.triton_jit import FUSED

    x, packed, y, dims, bm, grid = _setup(case)
    kernel = FUSED[case.format_obj.name]

    def run():
        kernel[grid](x, packed["d"], packed["qs"], y, *dims, BM=bm, BN=BN)
        return y

    return run


def _int8(case):
    """x quantized to q8_0 in a first kernel, then int32 block dots scaled once per block"""
    from quantbench.kernels.codecs.blocks_triton_jit import QUANTIZE
    from quantbench.kernels.matmul.triton_jit import INT8

    x, packed, y, dims, bm, grid = _setup(case)
    nblocks = x.numel() // 32
    xd = torch.empty(nblocks, dtype=torch.float16, device=x.device)
    xq = torch.empty(nblocks, 32, dtype=torch.int8, device=x.device)
    quantize_grid = ((nblocks + QUANTIZE_BLOCKS_PER_PROGRAM - 1) // QUANTIZE_BLOCKS_PER_PROGRAM,)
    kernel = INT8[case.format_obj.name]

    def run():
        QUANTIZE["q8_0"][quantize_grid](x, xd, xq, nblocks, BP=QUANTIZE_BLOCKS_PER_PROGRAM, enable_fp_fusion=False)
        kernel[grid](xq, xd, packed["d"], packed["qs"], y, *dims, BM=bm, BN=BN)
        return QuantizedActivations(y)

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="triton", name="fused_fma", formats=FORMATS, needs=("triton",), device="cuda")(_fused)
    variant(_op, backend="triton", name="int8_dot", formats=FORMATS, needs=("triton",), device="cuda")(_int8)
