"""Triton GPU `gemv` / `gemm` `fused_fma` on llama.cpp's k-quants q2_k .. q6_k: each 16-weight chunk's
levels decoded in registers, float32 FMAs, the sub-block's scale (and min) applied once per chunk
(kernels/matmul/kquant_triton_jit.py, imported in the factory).
"""
from __future__ import annotations

import torch

from quantbench.kernels.codecs.kquant_triton import is_k_quant, kquant_arguments
from quantbench.kernels.matmul.spec import packed_weights
from quantbench.kernels.registry import variant

BN = 32  # output columns per program
MAX_BM = 16  # activation rows per program (GEMV: the next power of two of m)
BK = 16  # weights per chunk along k: a 16-value sub-block, half a 32-value one


def _fused(case):
    """levels of each 16-weight chunk decoded in registers, float32 FMAs, sub-block scale once per chunk"""
    from quantbench.kernels.matmul.kquant_triton_jit import fused_k_quant

    fmt = case.format_obj
    x, packed = packed_weights(case)
    x = x.contiguous()
    m, n, k = x.shape[0], packed.shape[0], packed.shape[1]
    bm = min(MAX_BM, 1 << max(m - 1, 0).bit_length())
    grid = ((m + bm - 1) // bm, (n + BN - 1) // BN)
    tensors, constants = kquant_arguments(fmt, packed)
    y = torch.empty(m, n, dtype=torch.float32, device=x.device)

    def run():
        fused_k_quant[grid](x, *tensors, y, m, n, k, **constants, BM=bm, BN=BN, BK=BK)
        return y

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="triton", name="fused_fma", formats=is_k_quant, needs=("triton",), device="cuda")(_fused)
