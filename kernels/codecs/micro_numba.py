"""Numba dequantize of the floating-point micro formats (fp8, mxfp8/6/4, nvfp4): each code looked
up in its element's value table (kernels/formats/minifloat.py) and multiplied by its block's scale,
prange over blocks. MX scales are E8M0 exponents (a 256-entry table of powers of two), nvfp4's are
E4M3 bytes (their table) times the tensor scale, fp8's are fp32 per row (or one, or none). The
rotated options (rotate=1) undo the rotation in torch after the kernel (timed with it)."""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.formats.fp8 import FP8Format
from quantbench.kernels.formats.minifloat import E2M1, E4M3
from quantbench.kernels.formats.mx import E8M0_BIAS, MXFormat
from quantbench.kernels.formats.nvfp4 import NVFP4
from quantbench.kernels.registry import variant


@njit(cache=True, inline="always")
def decode_block(row, values, bits, w):
    """One block's codes (4, 6 or 8 bits a code, little-endian: minifloat.pack_codes) -> their
    element values in w float32 [block]."""
    block = w.shape[0]
    if bits == 8:
        for i in range(block):
            w[i] = values[row[i]]
    elif bits == 4:
        for j in range(block // 2):
            byte = row[j]
            w[2 * j] = values[byte & 15]
            w[2 * j + 1] = values[byte >> 4]
    else:
        for g in range(block // 4):
            word = np.int64(row[3 * g]) | (np.int64(row[3 * g + 1]) << 8) | (np.int64(row[3 * g + 2]) << 16)
            for q in range(4):
                w[4 * g + q] = values[(word >> (6 * q)) & 63]


@njit(parallel=True, cache=True)
def dequantize_blocks(codes, scale_codes, scale_table, row_scales, values, bits, out):
    """codes uint8 [nblocks, block * bits / 8] -> out float32 [nblocks, block] =
    values[code] * scale_table[scale_code] * row_scales[row] (nvfp4's second-level scale of the
    block's row; 1 for MX)."""
    nblocks, block = out.shape
    per_row = nblocks // row_scales.shape[0]
    for b in prange(nblocks):
        s = np.float32(scale_table[scale_codes[b]] * row_scales[b // per_row])
        decode_block(codes[b], values, bits, out[b])
        for i in range(block):
            out[b, i] *= s


@njit(parallel=True, cache=True)
def dequantize_rows(codes, scales, values, out):
    """fp8 codes uint8 [rows, dim] -> out float32 [rows, dim] = values[code] * scales[row]."""
    rows, dim = out.shape
    for r in prange(rows):
        s = scales[r]
        for i in range(dim):
            out[r, i] = values[codes[r, i]] * s


def e8m0_table() -> np.ndarray:
    table = np.ldexp(1.0, np.arange(256) - E8M0_BIAS)
    table[255] = np.nan  # E8M0's NaN code; encode never writes it
    return table.astype(np.float32)


def fp8_row_scales(fmt, packed, rows: int) -> np.ndarray:
    """float32 [rows]: an fp8 value's scale of each row (its own, the tensor's, or 1)."""
    if fmt.scale == "none":
        return np.ones(rows, np.float32)
    return np.ascontiguousarray(np.broadcast_to(packed["scales"].reshape(-1).numpy(), (rows,)))


def second_level(fmt, packed) -> tuple:
    """(element, table of the block scale codes, fp32 scale of each row) of an MX or nvfp4 value."""
    rows = packed["scales"].numel() * fmt.block // packed.shape[-1]
    if isinstance(fmt, NVFP4):
        tensor_scale = packed["tensor_scale"].reshape(-1).numpy()
        return E2M1, E4M3.table().numpy(), np.ascontiguousarray(np.broadcast_to(tensor_scale, (rows,)))
    return fmt.element, e8m0_table(), np.ones(rows, np.float32)


@variant("dequantize", backend="numba", name="parallel", formats=lambda fmt: isinstance(fmt, (MXFormat, NVFP4)),
         needs=("numba",))
def dequantize_microscaling_numba(case):
    """table lookup per code, one scale per block, prange over blocks"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"].cpu())
    block = fmt.block
    nblocks = packed["scales"].numel()
    codes = packed["codes"].reshape(nblocks, -1).numpy()
    scale_codes = packed["scales"].reshape(nblocks).numpy()
    element, scale_table, row_scales = second_level(fmt, packed)
    values = element.table().numpy()
    out = torch.empty(nblocks, block)
    out_np = out.numpy()

    def run():
        dequantize_blocks(codes, scale_codes, scale_table, row_scales, values, element.bits, out_np)
        return fmt.unrotated(out.reshape(packed.shape)).to(case.torch_dtype)

    return run


@variant("dequantize", backend="numba", name="parallel", formats=lambda fmt: isinstance(fmt, FP8Format),
         needs=("numba",))
def dequantize_fp8_numba(case):
    """table lookup per code times the row's fp32 scale, prange over rows"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"].cpu())
    dim = packed.shape[-1]
    rows = packed["codes"].numel() // dim
    codes = packed["codes"].reshape(rows, dim).numpy()
    scales = fp8_row_scales(fmt, packed, rows)
    values = fmt.element.table().numpy()
    out = torch.empty(rows, dim)
    out_np = out.numpy()

    def run():
        dequantize_rows(codes, scales, values, out_np)
        return out.reshape(packed.shape).to(case.torch_dtype)

    return run
