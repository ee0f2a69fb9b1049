"""Numba CPU kernels for llama.cpp's block formats (q8_0, q4_0, q4_1) and their rotated
variants (q8_0_rot, q4_0_rot): quantize and dequantize.

The kernels run blocks of 32 values (rotated formats: batches of groups) in parallel with
prange, and repeat the float32 arithmetic of the torch reference (kernels/formats/ggml_blocks.py,
formats/rotation.py) step for step, without fast-math, so encodings are bit-identical. The rotation
runs inside the kernel, on small buffers that stay in L1.

fp16 scales travel as uint16 bits (numba has no float16 on the CPU) and are written straight
into the float16 tensors of the returned Packed value. Decoding reads each fp16 scale from a
65536-entry float32 table, as ggml does on CPUs without F16C: converting the bits in the kernel
cost as much as the rest of the decode.

The block length n (32, or 16 nibble bytes) is passed in at run time on purpose: with a constant
trip count LLVM unrolls the inner loops completely before its loop vectorizer runs, and the
unrolled scalar code stays scalar (it cannot prove that input and output arrays do not alias).
Arrays are indexed [block, j] rather than flat at block * n + j: numba cannot prove a computed
flat index non-negative, and the wraparound check it then adds blocks vectorization (4x slower).
Running maxima and minima use selects, not branches, which random data would mispredict.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.common.numba_f16 import f16_table, f32_to_f16_bits
from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.rotation import random_signs
from quantbench.kernels.fwht.numba import BATCHES_PER_TASK, LANES, fwht_lanes
from quantbench.kernels.registry import variant

FORMATS = ("q8_0", "q4_0", "q4_1")
ROTATED = ("q8_0_rot", "q4_0_rot")
BLOCK = 32


# ---- one block: row r of x [blocks, n] -> block b of the packed fields --------------------------
@njit(inline="always")
def _reciprocal(d):
    return np.float32(1.0) / d if d != 0 else np.float32(0.0)


@njit(inline="always")
def quantize_block_q8_0(x, r, n, d_bits, qs, b):
    amax = np.float32(0.0)
    for j in range(n):
        a = abs(x[r, j])
        amax = a if a > amax else amax
    d = amax / np.float32(127.0)
    inv = _reciprocal(d)
    d_bits[b] = f32_to_f16_bits(d)
    for j in range(n):
        v = x[r, j] * inv
        whole = np.trunc(v)
        qs[b, j] = np.int8(whole + np.trunc(np.float32(2.0) * (v - whole)))  # roundf: ties away from 0


@njit(inline="always")
def quantize_block_q4_0(x, r, n, d_bits, qs, b):
    amax = np.float32(0.0)
    vmax = np.float32(0.0)
    for j in range(n):  # the first value of largest magnitude, with its sign
        v = x[r, j]
        bigger = abs(v) > amax
        vmax = v if bigger else vmax
        amax = abs(v) if bigger else amax
    d = vmax / np.float32(-8.0)
    inv = _reciprocal(d)
    d_bits[b] = f32_to_f16_bits(d)
    half = n // 2
    for j in range(half):
        lo = min(15, np.int32(x[r, j] * inv + np.float32(8.5)))
        hi = min(15, np.int32(x[r, j + half] * inv + np.float32(8.5)))
        qs[b, j] = np.uint8(lo | (hi << 4))


@njit(inline="always")
def quantize_block_q4_1(x, r, n, d_bits, m_bits, qs, b):
    vmin = np.float32(np.finfo(np.float32).max)
    vmax = -vmin
    for j in range(n):  # strict compares keep the first of equal values, as ggml does
        v = x[r, j]
        vmin = v if v < vmin else vmin
        vmax = v if v > vmax else vmax
    d = (vmax - vmin) / np.float32(15.0)
    inv = _reciprocal(d)
    d_bits[b] = f32_to_f16_bits(d)
    m_bits[b] = f32_to_f16_bits(vmin)
    half = n // 2
    for j in range(half):
        lo = min(15, np.int32((x[r, j] - vmin) * inv + np.float32(0.5)))
        hi = min(15, np.int32((x[r, j + half] - vmin) * inv + np.float32(0.5)))
        qs[b, j] = np.uint8(lo | (hi << 4))


@njit(inline="always")
def dequantize_block_q8_0(d, qs, b, out, r, n):
    for j in range(n):
        out[r, j] = np.float32(qs[b, j]) * d


@njit(inline="always")
def dequantize_block_q4_0(d, qs, b, out, r, n):
    half = n // 2
    for j in range(half):
        out[r, j] = np.float32(np.int32(qs[b, j] & 15) - 8) * d
        out[r, j + half] = np.float32(np.int32(qs[b, j] >> 4) - 8) * d


@njit(inline="always")
def dequantize_block_q4_1(d, m, qs, b, out, r, n):
    half = n // 2
    for j in range(half):
        out[r, j] = np.float32(qs[b, j] & 15) * d + m
        out[r, j + half] = np.float32(qs[b, j] >> 4) * d + m


# ---- whole tensors: x and out are float32 [blocks, 32] ------------------------------------------
@njit(parallel=True, cache=True)
def quantize_q8_0(x, d_bits, qs, n):
    for b in prange(d_bits.shape[0]):
        quantize_block_q8_0(x, b, n, d_bits, qs, b)


@njit(parallel=True, cache=True)
def quantize_q4_0(x, d_bits, qs, n):
    for b in prange(d_bits.shape[0]):
        quantize_block_q4_0(x, b, n, d_bits, qs, b)


@njit(parallel=True, cache=True)
def quantize_q4_1(x, d_bits, m_bits, qs, n):
    for b in prange(d_bits.shape[0]):
        quantize_block_q4_1(x, b, n, d_bits, m_bits, qs, b)


@njit(parallel=True, cache=True)
def dequantize_q8_0(d_bits, qs, out, n, f16):
    for b in prange(d_bits.shape[0]):
        dequantize_block_q8_0(f16[d_bits[b]], qs, b, out, b, n)


@njit(parallel=True, cache=True)
def dequantize_q4_0(d_bits, qs, out, n, f16):
    for b in prange(d_bits.shape[0]):
        dequantize_block_q4_0(f16[d_bits[b]], qs, b, out, b, n)


@njit(parallel=True, cache=True)
def dequantize_q4_1(d_bits, m_bits, qs, out, n, f16):
    for b in prange(d_bits.shape[0]):
        dequantize_block_q4_1(f16[d_bits[b]], f16[m_bits[b]], qs, b, out, b, n)


QUANTIZE = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0, "q4_1": quantize_q4_1}
DEQUANTIZE = {"q8_0": dequantize_q8_0, "q4_0": dequantize_q4_0, "q4_1": dequantize_q4_1}


# ---- rotated formats: rows of x are groups of g values ------------------------------------------
# Groups are rotated LANES at a time with fwht_numba's lane-batched butterflies (the reference's
# stages and final scale, vectorized across groups), then quantized block by block from a
# row-major copy of the rotated groups; decode runs the same steps backwards.
@njit(parallel=True, cache=True)
def quantize_rotated(x, signs, scale, d_bits, qs, n, q4, lanes):
    groups, g = x.shape
    per_group = g // n
    batches = (groups + lanes - 1) // lanes
    for task in prange((batches + BATCHES_PER_TASK - 1) // BATCHES_PER_TASK):
        y = np.empty((g, lanes), np.float32)
        rotated = np.empty((lanes * per_group, n), np.float32)
        for batch in range(task * BATCHES_PER_TASK, min(batches, (task + 1) * BATCHES_PER_TASK)):
            base = batch * lanes
            count = min(lanes, groups - base)
            y[:, :] = 0.0
            for lane in range(count):
                for i in range(g):
                    y[i, lane] = x[base + lane, i] * signs[i]
            fwht_lanes(y, scale)
            for lane in range(count):
                for k in range(per_group):
                    r = lane * per_group + k
                    for j in range(n):
                        rotated[r, j] = y[k * n + j, lane]
                    if q4:
                        quantize_block_q4_0(rotated, r, n, d_bits, qs, (base + lane) * per_group + k)
                    else:
                        quantize_block_q8_0(rotated, r, n, d_bits, qs, (base + lane) * per_group + k)


@njit(parallel=True, cache=True)
def dequantize_rotated(d_bits, qs, out, signs, scale, n, q4, f16, lanes):
    groups, g = out.shape
    per_group = g // n
    batches = (groups + lanes - 1) // lanes
    for task in prange((batches + BATCHES_PER_TASK - 1) // BATCHES_PER_TASK):
        y = np.empty((g, lanes), np.float32)
        decoded = np.empty((per_group, n), np.float32)
        for batch in range(task * BATCHES_PER_TASK, min(batches, (task + 1) * BATCHES_PER_TASK)):
            base = batch * lanes
            count = min(lanes, groups - base)
            y[:, :] = 0.0
            for lane in range(count):
                for k in range(per_group):
                    b = (base + lane) * per_group + k
                    if q4:
                        dequantize_block_q4_0(f16[d_bits[b]], qs, b, decoded, k, n)
                    else:
                        dequantize_block_q8_0(f16[d_bits[b]], qs, b, decoded, k, n)
                    for j in range(n):
                        y[k * n + j, lane] = decoded[k, j]
            fwht_lanes(y, scale)
            for lane in range(count):
                for i in range(g):
                    out[base + lane, i] = y[i, lane] * signs[i]


# ---- buffers -----------------------------------------------------------------------------------
def half_bits(t: torch.Tensor) -> np.ndarray:
    """uint16 numpy view of a float16 tensor's storage, flat (zero copy)."""
    return t.view(torch.int16).reshape(-1).numpy().view(np.uint16)


def kernel_arrays(fmt, packed: Packed) -> list[np.ndarray]:
    """The packed fields as the kernels take them: scales as uint16 bits, codes [nblocks, bytes]."""
    return field_arrays(fmt, packed.fields)


def field_arrays(fmt, fields: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """kernel_arrays of a packed value's fields (zero copy: the kernels write through them)."""
    arrays = [half_bits(fields[name]) for name in fmt.scale_fields]
    arrays.append(fields["qs"].reshape(-1, fmt.code_bytes).numpy())
    return arrays


def float32_numpy(x: torch.Tensor) -> np.ndarray:
    return x.cpu().to(torch.float32).contiguous().numpy()


def rotation_arguments(fmt, dim: int) -> tuple:
    """(group, signs, scale, is_q4) for a rotated format's kernels, as formats/rotation.py computes them."""
    g = fmt.group_for(dim)
    signs = random_signs(g).numpy() if fmt.signs else np.ones(g, dtype=np.float32)
    return g, signs, np.float32(1.0 / math.sqrt(g)), fmt.inner.name == "q4_0"


def result(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return out if dtype == torch.float32 else out.to(dtype)


def checked(run, fmt):
    """`run` after one call outside the timed region: side data that overflowed float16 raises as in
    the torch encoder, and the packed result carries its count of underflowed scales."""
    packed = fmt.check_side_data(run())
    packed.scale_underflow = fmt.count_scale_underflow(packed)
    return run


# ---- variants ----------------------------------------------------------------------------------
@variant("quantize", backend="numba", name="parallel", formats=FORMATS, needs=("numba",))
def quantize_blocks_numba(case):
    """prange over blocks, float32 arithmetic of ggml's reference quantizers"""
    fmt = case.format_obj
    x = case.inputs()["x"].cpu()
    fmt.check_input(x)
    blocks = float32_numpy(x).reshape(-1, BLOCK)
    packed = fmt.empty_packed(x.shape)
    arrays = kernel_arrays(fmt, packed)
    kernel = QUANTIZE[fmt.name]

    def run():
        kernel(blocks, *arrays, BLOCK)
        return packed

    return checked(run, fmt)


@variant("dequantize", backend="numba", name="parallel", formats=FORMATS, needs=("numba",))
def dequantize_blocks_numba(case):
    """prange over blocks, fp16 scales read through a 64K-entry float32 table"""
    fmt = case.format_obj
    x = case.inputs()["x"].cpu()
    arrays = kernel_arrays(fmt, fmt.encode(x))
    out = torch.empty(tuple(x.shape), dtype=torch.float32)
    out_blocks = out.reshape(-1, BLOCK).numpy()
    kernel, table, dtype = DEQUANTIZE[fmt.name], f16_table(), case.torch_dtype

    def run():
        kernel(*arrays, out_blocks, BLOCK, table)
        return result(out, dtype)

    return run


@variant("quantize", backend="numba", name="parallel", formats=ROTATED, needs=("numba",))
def quantize_rotated_numba(case):
    """32 groups at a time: signs, FWHT across SIMD lanes, then the block quantizer"""
    fmt = case.format_obj
    x = case.inputs()["x"].cpu()
    fmt.check_input(x)
    g, signs, scale, q4 = rotation_arguments(fmt, x.shape[-1])
    groups = float32_numpy(x).reshape(-1, g)
    packed = fmt.empty_packed(x.shape)
    d_bits, qs = kernel_arrays(fmt.inner, packed)

    def run():
        quantize_rotated(groups, signs, scale, d_bits, qs, BLOCK, q4, LANES)
        return packed

    return checked(run, fmt)


@variant("dequantize", backend="numba", name="parallel", formats=ROTATED, needs=("numba",))
def dequantize_rotated_numba(case):
    """32 groups at a time: block decode, FWHT across SIMD lanes, signs"""
    fmt = case.format_obj
    x = case.inputs()["x"].cpu()
    d_bits, qs = kernel_arrays(fmt.inner, fmt.encode(x))
    g, signs, scale, q4 = rotation_arguments(fmt, x.shape[-1])
    out = torch.empty(tuple(x.shape), dtype=torch.float32)
    groups = out.reshape(-1, g).numpy()
    table, dtype = f16_table(), case.torch_dtype

    def run():
        dequantize_rotated(d_bits, qs, groups, signs, scale, BLOCK, q4, table, LANES)
        return result(out, dtype)

    return run
