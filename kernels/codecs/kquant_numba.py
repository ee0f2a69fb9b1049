"""Numba dequantize of llama.cpp's k-quants (q2_k .. q6_k), and the super-block decoders that the
fused matmuls (matmul/kquant_numba.py) share.

`decode_<type>` turns one super-block into its 256 float32 values with the arithmetic of the torch
decoder (kernels/formats/k_quants.py), so the output is bit-identical: sub-block scale d * s (and
offset dmin * m) first, then scale * q (- offset). The fp16 super scales come in as float32 (read
through codecs/blocks_numba.py's table); the byte layouts are those of formats/k_quant_layout.py.
Loops run over the 16 or 32 values that share a sub-block scale, with the lane count (LANES) passed
in at run time as the trip count (codecs/blocks_numba.py explains why a constant one would stay
scalar); indices use the constant, which numba then knows non-negative (a run-time factor in an
index adds a wraparound check that blocks vectorization: q6_k 3x slower).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.codecs.blocks_numba import f16_table, half_bits, result
from quantbench.kernels.registry import variant

FORMATS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
LANES = 16  # values of one 16-value sub-block, or of half a 32-value one


@njit(cache=True, inline="always")
def scale_min_pair(scales, j):
    """(scale, min) 6-bit codes of sub-block j of a q4_k / q5_k super-block."""
    if j < 4:
        return scales[j] & 63, scales[j + 4] & 63
    return (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)


@njit(cache=True, inline="always")
def q3_scale(scales, j):
    """Signed scale of sub-block j of a q3_k super-block."""
    low = np.int32(scales[j] & 15) if j < 8 else np.int32(scales[j - 8] >> 4)
    high = (np.int32(scales[8 + j % 4]) >> np.int32(2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


@njit(cache=True, inline="always")
def decode_q2_k(d, dmin, scales, qs, out, lanes):
    for h in range(2):
        for s in range(4):
            shift = 2 * s
            for half in range(2):
                j = 8 * h + 2 * s + half
                sub_d = d * np.float32(scales[j] & 15)
                sub_m = dmin * np.float32(scales[j] >> 4)
                base = 32 * h + LANES * half
                first = 128 * h + 32 * s + LANES * half
                for i in range(lanes):
                    out[first + i] = sub_d * np.float32((qs[base + i] >> shift) & 3) - sub_m


@njit(cache=True, inline="always")
def decode_q3_k(d, hmask, qs, scales, out, lanes):
    for h in range(2):
        for s in range(4):
            shift = 2 * s
            bit = 4 * h + s
            for half in range(2):
                sub_d = d * np.float32(q3_scale(scales, 8 * h + 2 * s + half))
                base = 32 * h + LANES * half
                first = 128 * h + 32 * s + LANES * half
                for i in range(lanes):
                    low = np.int32((qs[base + i] >> shift) & 3)
                    high = np.int32((hmask[LANES * half + i] >> bit) & 1)
                    out[first + i] = sub_d * np.float32(low - 4 + 4 * high)


@njit(cache=True, inline="always")
def decode_q4_k(d, dmin, scales, qs, out, lanes):
    for c in range(4):
        sc, mn = scale_min_pair(scales, 2 * c)
        d_low, m_low = d * np.float32(sc), dmin * np.float32(mn)
        sc, mn = scale_min_pair(scales, 2 * c + 1)
        d_high, m_high = d * np.float32(sc), dmin * np.float32(mn)
        for i in range(2 * lanes):
            byte = np.int32(qs[32 * c + i])
            out[64 * c + i] = d_low * np.float32(byte & 15) - m_low
            out[64 * c + 32 + i] = d_high * np.float32(byte >> 4) - m_high


@njit(cache=True, inline="always")
def decode_q5_k(d, dmin, scales, qh, qs, out, lanes):
    for c in range(4):
        sc, mn = scale_min_pair(scales, 2 * c)
        d_low, m_low = d * np.float32(sc), dmin * np.float32(mn)
        sc, mn = scale_min_pair(scales, 2 * c + 1)
        d_high, m_high = d * np.float32(sc), dmin * np.float32(mn)
        shift = np.int32(2 * c)
        for i in range(2 * lanes):
            byte = np.int32(qs[32 * c + i])
            high = np.int32(qh[i]) >> shift
            out[64 * c + i] = d_low * np.float32((byte & 15) | ((high & 1) << 4)) - m_low
            out[64 * c + 32 + i] = d_high * np.float32((byte >> 4) | ((high & 2) << 3)) - m_high


@njit(cache=True, inline="always")
def decode_q6_k(d, ql, qh, scales, out, lanes):
    for h in range(2):
        for half in range(2):
            j = 8 * h + half
            s0, s1 = d * np.float32(scales[j]), d * np.float32(scales[j + 2])
            s2, s3 = d * np.float32(scales[j + 4]), d * np.float32(scales[j + 6])
            for i in range(lanes):
                lane = LANES * half + i
                low0 = np.int32(ql[64 * h + lane])
                low1 = np.int32(ql[64 * h + 32 + lane])
                high = np.int32(qh[32 * h + lane])
                first = 128 * h + lane
                out[first] = s0 * np.float32(((low0 & 15) | ((high & 3) << 4)) - 32)
                out[first + 32] = s1 * np.float32(((low1 & 15) | (((high >> 2) & 3) << 4)) - 32)
                out[first + 64] = s2 * np.float32(((low0 >> 4) | (((high >> 4) & 3) << 4)) - 32)
                out[first + 96] = s3 * np.float32(((low1 >> 4) | (((high >> 6) & 3) << 4)) - 32)


# ---- whole tensors: every array is [nblocks, ...], out float32 [nblocks, 256] -------------------
@njit(parallel=True, cache=True)
def dequantize_q2_k(scales, qs, d_bits, dmin_bits, out, f16, lanes):
    for b in prange(d_bits.shape[0]):
        decode_q2_k(f16[d_bits[b]], f16[dmin_bits[b]], scales[b], qs[b], out[b], lanes)


@njit(parallel=True, cache=True)
def dequantize_q3_k(hmask, qs, scales, d_bits, out, f16, lanes):
    for b in prange(d_bits.shape[0]):
        decode_q3_k(f16[d_bits[b]], hmask[b], qs[b], scales[b], out[b], lanes)


@njit(parallel=True, cache=True)
def dequantize_q4_k(d_bits, dmin_bits, scales, qs, out, f16, lanes):
    for b in prange(d_bits.shape[0]):
        decode_q4_k(f16[d_bits[b]], f16[dmin_bits[b]], scales[b], qs[b], out[b], lanes)


@njit(parallel=True, cache=True)
def dequantize_q5_k(d_bits, dmin_bits, scales, qh, qs, out, f16, lanes):
    for b in prange(d_bits.shape[0]):
        decode_q5_k(f16[d_bits[b]], f16[dmin_bits[b]], scales[b], qh[b], qs[b], out[b], lanes)


@njit(parallel=True, cache=True)
def dequantize_q6_k(ql, qh, scales, d_bits, out, f16, lanes):
    for b in prange(d_bits.shape[0]):
        decode_q6_k(f16[d_bits[b]], ql[b], qh[b], scales[b], out[b], lanes)


def kernel_arrays(fmt, packed) -> tuple:
    """The packed fields, flattened to [nblocks, ...] in the struct's order, fp16 as uint16 bits."""
    return tuple(half_bits(packed[f.name]) if f.count is None else packed[f.name].reshape(-1, f.count).numpy()
                 for f in fmt.struct.fields)


DEQUANTIZE = {"q2_k": dequantize_q2_k, "q3_k": dequantize_q3_k, "q4_k": dequantize_q4_k, "q5_k": dequantize_q5_k,
              "q6_k": dequantize_q6_k}


@variant("dequantize", backend="numba", name="parallel", formats=FORMATS, needs=("numba",))
def dequantize_k_quants_numba(case):
    """prange over super-blocks, each decoded 16 values (one sub-block scale) at a time"""
    fmt = case.format_obj
    x = case.inputs()["x"].cpu()
    arrays = kernel_arrays(fmt, fmt.encode(x))
    out = torch.empty(tuple(x.shape), dtype=torch.float32)
    out_blocks = out.reshape(-1, 256).numpy()
    kernel, table, dtype = DEQUANTIZE[fmt.name], f16_table(), case.torch_dtype

    def run():
        kernel(*arrays, out_blocks, table, LANES)
        return result(out, dtype)

    return run
