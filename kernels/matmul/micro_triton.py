"""Triton GPU `gemv` / `gemm` `fused_fma` on the floating-point micro formats (fp8, mxfp8/6/4,
nvfp4): each 16-weight chunk decoded in registers, float32 FMAs, its block scale applied once per
chunk and the fp32 second-level scale once per output (kernels/matmul/micro_triton_jit.py,
imported in the factory). Rotated weights (rotate=1) hold W M, so the activations are rotated
once per call in torch (x M) instead, as the numba variant does: (x M)(W M)^T = x W^T.
"""
from __future__ import annotations

import torch

from quantbench.kernels.codecs.micro_triton import is_micro, micro_arguments, rotates
from quantbench.kernels.matmul.spec import packed_weights
from quantbench.kernels.registry import variant

BN = 32  # output columns per program
MAX_BM = 16  # activation rows per program (GEMV: the next power of two of m)
BK = 16  # weights per chunk along k: nvfp4's block, half an MX block


def _fused(case):
    """decode each 16-weight chunk in registers (bit arithmetic), float32 FMAs, block scale once per chunk"""
    from quantbench.kernels.matmul.micro_triton_jit import fused_micro

    fmt = case.format_obj
    x, packed = packed_weights(case)
    x = x.contiguous()
    m, n, k = x.shape[0], packed.shape[0], packed.shape[1]
    bm = min(MAX_BM, 1 << max(m - 1, 0).bit_length())
    grid = ((m + bm - 1) // bm, (n + BN - 1) // BN)
    tensors, row_scale_stride, constants = micro_arguments(fmt, packed)
    y = torch.empty(m, n, dtype=torch.float32, device=x.device)

    def run():
        xr = fmt.rotated(x).contiguous() if rotates(fmt) else x
        fused_micro[grid](xr, *tensors, y, m, n, k, row_scale_stride, **constants, BM=bm, BN=BN, BK=BK)
        return y

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="triton", name="fused_fma", formats=is_micro, needs=("triton",), device="cuda")(_fused)
