"""Numba fused GEMV on llama.cpp's k-quants (q2_k .. q6_k): y = x @ W^T without the dense W.

Each core takes a run of weight rows. A super-block's codes are decoded in registers, one sub-block
scale's worth (16 or 32 values, SIMD lanes) at a time, and dotted with the activations into one
partial sum per sub-block; each partial is multiplied by its sub-block scale once. Formats with a
min (q2_k, q4_k, q5_k: w = d s q - dmin m) subtract dmin m times the activations' sum over the
sub-block, summed once per call before the rows are shared out. Sums run in any order (the check
allows it).

Decoding the super-block into an L1 buffer first and dotting the buffer (the micro formats' way,
matmul/micro_numba.py) cost 3x on q6_k: the decoded values make a round trip through memory.
Registered for gemv; any number of activation rows works, but each row decodes the weights again
(prefill should reuse a decoded tile, as matmul/numba_fma.py's tiled kernels do; torch's
dequant_matmul serves gemm).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.codecs.blocks_numba import f16_table
from quantbench.kernels.codecs.kquant_numba import FORMATS, LANES, kernel_arrays, q3_scale, scale_min_pair
from quantbench.kernels.matmul.numba_fma import FAST, ROWS_PER_TASK, row_tasks
from quantbench.kernels.matmul.spec import packed_weights
from quantbench.kernels.registry import variant

F0 = np.float32(0.0)


@njit(cache=True, fastmath=FAST)
def sub_block_sums(x, length):
    """x float32 [m, nb, 256] -> float32 [m, nb, 256 // length]: the sum of each sub-block's activations."""
    m, nb, _ = x.shape
    sums = np.zeros((m, nb, 256 // length), np.float32)
    for r in range(m):
        for b in range(nb):
            for i in range(256):
                sums[r, b, i // length] += x[r, b, i]
    return sums


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q2_k(x, scales, qs, d_bits, dmin_bits, f16, out, lanes):
    """x float32 [m, nb, 256]; fields [n, nb(, bytes)]; out float32 [m, n]."""
    n, nb = d_bits.shape
    sums = sub_block_sums(x, 16)
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(x.shape[0]):
                acc = F0
                for b in range(nb):
                    d, dmin = f16[d_bits[row, b]], f16[dmin_bits[row, b]]
                    sc, codes, xr, xs = scales[row, b], qs[row, b], x[r, b], sums[r, b]
                    dots = F0
                    offsets = F0
                    for h in range(2):
                        for half in range(2):
                            d0 = d1 = d2 = d3 = F0
                            for i in range(lanes):
                                lane = LANES * half + i
                                byte = np.int32(codes[32 * h + lane])
                                first = 128 * h + lane
                                d0 += np.float32(byte & 3) * xr[first]
                                d1 += np.float32((byte >> 2) & 3) * xr[first + 32]
                                d2 += np.float32((byte >> 4) & 3) * xr[first + 64]
                                d3 += np.float32(byte >> 6) * xr[first + 96]
                            j = 8 * h + half
                            dots += (np.float32(sc[j] & 15) * d0 + np.float32(sc[j + 2] & 15) * d1
                                     + np.float32(sc[j + 4] & 15) * d2 + np.float32(sc[j + 6] & 15) * d3)
                            offsets += (np.float32(sc[j] >> 4) * xs[j] + np.float32(sc[j + 2] >> 4) * xs[j + 2]
                                        + np.float32(sc[j + 4] >> 4) * xs[j + 4]
                                        + np.float32(sc[j + 6] >> 4) * xs[j + 6])
                    acc += d * dots - dmin * offsets
                out[r, row] = acc


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q3_k(x, hmask, qs, scales, d_bits, f16, out, lanes):
    n, nb = d_bits.shape
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(x.shape[0]):
                acc = F0
                for b in range(nb):
                    high_bits, codes, sc, xr = hmask[row, b], qs[row, b], scales[row, b], x[r, b]
                    dots = F0
                    for h in range(2):
                        shift = np.int32(4 * h)
                        for half in range(2):
                            d0 = d1 = d2 = d3 = F0
                            for i in range(lanes):
                                lane = LANES * half + i
                                byte = np.int32(codes[32 * h + lane])
                                high = (np.int32(high_bits[lane]) >> shift) << 2  # bit s of the 4 at bit s + 2
                                first = 128 * h + lane
                                d0 += np.float32((byte & 3) - 4 + (high & 4)) * xr[first]
                                d1 += np.float32(((byte >> 2) & 3) - 4 + ((high >> 1) & 4)) * xr[first + 32]
                                d2 += np.float32(((byte >> 4) & 3) - 4 + ((high >> 2) & 4)) * xr[first + 64]
                                d3 += np.float32((byte >> 6) - 4 + ((high >> 3) & 4)) * xr[first + 96]
                            j = 8 * h + half
                            dots += (np.float32(q3_scale(sc, j)) * d0 + np.float32(q3_scale(sc, j + 2)) * d1
                                     + np.float32(q3_scale(sc, j + 4)) * d2 + np.float32(q3_scale(sc, j + 6)) * d3)
                    acc += f16[d_bits[row, b]] * dots
                out[r, row] = acc


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q4_k(x, d_bits, dmin_bits, scales, qs, f16, out, lanes):
    n, nb = d_bits.shape
    sums = sub_block_sums(x, 32)
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(x.shape[0]):
                acc = F0
                for b in range(nb):
                    sc, codes, xr, xs = scales[row, b], qs[row, b], x[r, b], sums[r, b]
                    dots = F0
                    offsets = F0
                    for c in range(4):
                        low = F0
                        high = F0
                        for i in range(2 * lanes):
                            byte = np.int32(codes[32 * c + i])
                            low += np.float32(byte & 15) * xr[64 * c + i]
                            high += np.float32(byte >> 4) * xr[64 * c + 32 + i]
                        s_low, m_low = scale_min_pair(sc, 2 * c)
                        s_high, m_high = scale_min_pair(sc, 2 * c + 1)
                        dots += np.float32(s_low) * low + np.float32(s_high) * high
                        offsets += np.float32(m_low) * xs[2 * c] + np.float32(m_high) * xs[2 * c + 1]
                    acc += f16[d_bits[row, b]] * dots - f16[dmin_bits[row, b]] * offsets
                out[r, row] = acc


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q5_k(x, d_bits, dmin_bits, scales, qh, qs, f16, out, lanes):
    n, nb = d_bits.shape
    sums = sub_block_sums(x, 32)
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(x.shape[0]):
                acc = F0
                for b in range(nb):
                    sc, fifth, codes, xr, xs = scales[row, b], qh[row, b], qs[row, b], x[r, b], sums[r, b]
                    dots = F0
                    offsets = F0
                    for c in range(4):
                        shift = np.int32(2 * c)
                        low = F0
                        high = F0
                        for i in range(2 * lanes):
                            byte = np.int32(codes[32 * c + i])
                            bits = np.int32(fifth[i]) >> shift
                            low += np.float32((byte & 15) | ((bits & 1) << 4)) * xr[64 * c + i]
                            high += np.float32((byte >> 4) | ((bits & 2) << 3)) * xr[64 * c + 32 + i]
                        s_low, m_low = scale_min_pair(sc, 2 * c)
                        s_high, m_high = scale_min_pair(sc, 2 * c + 1)
                        dots += np.float32(s_low) * low + np.float32(s_high) * high
                        offsets += np.float32(m_low) * xs[2 * c] + np.float32(m_high) * xs[2 * c + 1]
                    acc += f16[d_bits[row, b]] * dots - f16[dmin_bits[row, b]] * offsets
                out[r, row] = acc


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q6_k(x, ql, qh, scales, d_bits, f16, out, lanes):
    n, nb = d_bits.shape
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(x.shape[0]):
                acc = F0
                for b in range(nb):
                    low_codes, high_codes, sc, xr = ql[row, b], qh[row, b], scales[row, b], x[r, b]
                    dots = F0
                    for h in range(2):
                        for half in range(2):
                            d0 = d1 = d2 = d3 = F0
                            for i in range(lanes):
                                lane = LANES * half + i
                                low0 = np.int32(low_codes[64 * h + lane])
                                low1 = np.int32(low_codes[64 * h + 32 + lane])
                                high = np.int32(high_codes[32 * h + lane])
                                first = 128 * h + lane
                                d0 += np.float32(((low0 & 15) | ((high & 3) << 4)) - 32) * xr[first]
                                d1 += np.float32(((low1 & 15) | (((high >> 2) & 3) << 4)) - 32) * xr[first + 32]
                                d2 += np.float32(((low0 >> 4) | (((high >> 4) & 3) << 4)) - 32) * xr[first + 64]
                                d3 += np.float32(((low1 >> 4) | (((high >> 6) & 3) << 4)) - 32) * xr[first + 96]
                            j = 8 * h + half
                            dots += (np.float32(sc[j]) * d0 + np.float32(sc[j + 2]) * d1
                                     + np.float32(sc[j + 4]) * d2 + np.float32(sc[j + 6]) * d3)
                    acc += f16[d_bits[row, b]] * dots
                out[r, row] = acc


GEMV = {"q2_k": gemv_q2_k, "q3_k": gemv_q3_k, "q4_k": gemv_q4_k, "q5_k": gemv_q5_k, "q6_k": gemv_q6_k}


def weight_arrays(fmt, packed) -> tuple:
    """The kernels' arrays of a packed weight [n, k]: every field as [n, nb(, bytes)]."""
    n, k = packed.shape
    return tuple(a.reshape(n, k // 256, *a.shape[1:]) for a in kernel_arrays(fmt, packed))


@variant("gemv", backend="numba", name="fused_fma", formats=FORMATS, needs=("numba",))
def gemv_k_quants_numba(case):
    """codes decoded in registers, one partial dot per sub-block times its scale (minus min x sum)"""
    fmt = case.format_obj
    x, packed = packed_weights(case.with_device("cpu"))
    n, k = packed.shape
    arrays = weight_arrays(fmt, packed)
    xb = x.contiguous().numpy().reshape(x.shape[0], k // 256, 256)
    out = np.empty((x.shape[0], n), np.float32)
    y = torch.from_numpy(out)
    kernel, table = GEMV[fmt.name], f16_table()

    def run():
        kernel(xb, *arrays, table, out, LANES)
        return y

    return run
