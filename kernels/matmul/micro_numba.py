"""Numba fused GEMV/GEMM on the floating-point micro formats (fp8, mxfp8/6/4, nvfp4): each weight
block decoded in registers (element table lookup), dotted with the activations, times its block
scale, prange over output rows. Rotated weights (rotate=1) hold W M, so the activations are
rotated once per call (x M) instead: (x M)(W M)^T = x W^T."""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.codecs.micro_numba import decode_block, fp8_row_scales, second_level
from quantbench.kernels.formats.fp8 import FP8Format
from quantbench.kernels.formats.mx import MXFormat
from quantbench.kernels.formats.nvfp4 import NVFP4
from quantbench.kernels.formats.optional_rotation import OptionalRotation
from quantbench.kernels.matmul.spec import packed_weights
from quantbench.kernels.registry import variant


@njit(parallel=True, cache=True)
def fused_matmul(x, codes, scale_index, scale_table, row_scales, values, bits, out):
    """x float32 [m, k]; codes uint8 [n, nblocks, block * bits / 8]; scale_index [n, nblocks] into
    scale_table; out float32 [m, n] = x @ W^T with W = values[code] * scale * row_scales[row]."""
    m = x.shape[0]
    n, nblocks, _ = codes.shape
    block = x.shape[1] // nblocks
    for j in prange(n):
        w = np.empty(block, np.float32)
        acc = np.zeros(m, np.float32)
        for b in range(nblocks):
            decode_block(codes[j, b], values, bits, w)
            s = np.float32(scale_table[scale_index[j, b]] * row_scales[j])
            base = b * block
            for r in range(m):
                dot = np.float32(0.0)
                for i in range(block):
                    dot += w[i] * x[r, base + i]
                acc[r] += dot * s
        for r in range(m):
            out[r, j] = acc[r]


def is_micro(fmt) -> bool:
    return isinstance(fmt, (FP8Format, MXFormat, NVFP4))


def _kernel_arrays(fmt, packed):
    """(codes [n, nblocks, bytes], scale index [n, nblocks], scale table, row scales, element)."""
    n, k = packed.shape
    if isinstance(fmt, FP8Format):
        codes = packed["codes"].reshape(n, 1, k).numpy()
        index = np.arange(n, dtype=np.int32).reshape(n, 1)
        return codes, index, fp8_row_scales(fmt, packed, n), np.ones(n, np.float32), fmt.element
    nblocks = k // fmt.block
    codes = packed["codes"].reshape(n, nblocks, -1).numpy()
    index = packed["scales"].reshape(n, nblocks).numpy()
    element, table, row_scales = second_level(fmt, packed)
    return codes, index, table, row_scales, element


def _factory(case):
    """decode each weight block in registers (table lookup), float FMAs, block scale once per block"""
    fmt = case.format_obj
    x, packed = packed_weights(case.with_device("cpu"))
    codes, index, table, row_scales, element = _kernel_arrays(fmt, packed)
    values = element.table().numpy()
    x = x.contiguous()
    out = np.empty((x.shape[0], packed.shape[0]), np.float32)
    y = torch.from_numpy(out)
    rotates = isinstance(fmt, OptionalRotation)  # fp8 has no rotation option

    def run():
        xr = fmt.rotated(x) if rotates else x
        fused_matmul(xr.numpy(), codes, index, table, row_scales, values, element.bits, out)
        return y

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="numba", name="fused_fma", formats=is_micro, needs=("numba",))(_factory)
