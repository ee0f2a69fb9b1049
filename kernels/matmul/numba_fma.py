"""Numba CPU kernels for y = x @ W^T with W stored in a block or turbo format, float FMAs.

Nothing here materializes the dense W. Two shapes of kernel:

* GEMV (`gemv_q8_0`, `gemv_q4` for q4_0 and q4_1; m up to a few rows): a task takes ROW_GROUP
  weight rows; a block's codes are decoded in registers and multiplied into lane accumulators per
  row (q8_0: 32, one per value; q4: `half` = 16, lane j taking values j and j + 16 of every block,
  which share a nibble byte), summed at the end of the row. Lanes rather than a sum per block spare
  a horizontal reduction per block (q4_0, one core: 25% faster). `gemv_turbo` does the same for the
  turbo formats, one rotation group at a time, its 8-level codebook read per value (a gather: not
  vectorized).
* Tiled (`tiled_*`, any format, any m): a tile of NT weight rows x KC input columns is decoded
  into a transposed float32 tile wt[KC, NT] (32 KB, about an L1), then every activation row is
  multiplied into it with the NT outputs as SIMD lanes, 16 tile rows at a time with the sums in
  registers (NT = 16, 16 KB: 3.8 against 3.2 ms for q4_0 at m=128, n=1536, k=576 on the AVX2
  EPYC). The decoded tile is reused by all m rows, which is what makes it the prefill kernel.

Turbo formats are multiplied in their rotated domain: the caller rotates each activation group
once (x_rot = FWHT(signs * x)), and the tile holds norm * codebook[code] (see matmul/numba.py).

fp16 scales are read through the 65536-entry float32 table of codecs/blocks_numba.py. Loop bounds such
as `half` are run-time values on purpose (codecs/blocks_numba.py explains: constant trip counts get
unrolled before vectorization and stay scalar).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.common.numba_row_math import ROWS as TILE_ROWS
from quantbench.kernels.common.numba_row_math import tile_axpy

ROWS_PER_TASK = 8
# Float sums may be reordered (the check allows any order of the k terms): that is what lets LLVM
# vectorize the reductions; contraction into FMAs likewise. No nnan/ninf: those would change
# results for non-finite inputs.
FAST = {"reassoc", "contract", "nsz"}
# int32 constants: with a Python int, numba widens `byte >> 4` to int64 and LLVM then shifts
# 64-bit lanes and packs them back
LOW, SHIFT, OFFSET = np.int32(15), np.int32(4), np.int32(8)
NT = 32  # weight rows per tile (the SIMD lanes of the tiled kernel)
KC = 256  # input columns per tile: a multiple of every block and group size


@njit(cache=True, inline="always")
def row_tasks(n):
    return (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK


# ---- GEMV: block formats, decode in registers ----------------------------------------------------
# A task takes ROW_GROUP weight rows at once: the activation values are loaded once for the group,
# and the group's accumulators are independent chains (with one row a pass, each block waited on
# the previous block's accumulator store). The codes are widened in int32 lanes: numba types
# `byte & 15` as int64, and unless the expression is truncated back to int32 before the float
# conversion LLVM widens every code to 64 bits, half the lanes a vector. q4_0 4096 x 4096, one
# activation row, 2 threads: 1.37 ms one row a pass in int64 lanes, 1.28 ms in int32 lanes, 0.79 ms
# with 4 rows a pass.
ROW_GROUP = 4
I32 = np.int32


@njit(cache=True, inline="always")
def group_rows(task, n):
    """The ROW_GROUP weight rows of a task, the last ones clamped to row n - 1 (a group past the end
    recomputes that row; only rows below n are written)."""
    r0 = task * ROW_GROUP
    return r0, min(r0 + 1, n - 1), min(r0 + 2, n - 1), min(r0 + 3, n - 1)


@njit(cache=True, inline="always")
def store_group(out, r, r0, n, a0, a1, a2, a3):
    out[r, r0] = a0.sum()
    if r0 + 1 < n:
        out[r, r0 + 1] = a1.sum()
    if r0 + 2 < n:
        out[r, r0 + 2] = a2.sum()
    if r0 + 3 < n:
        out[r, r0 + 3] = a3.sum()


@njit(cache=True, inline="always")
def q4_pair(qs, row, b, j, xl, xh, offset):
    """(low code - offset) xl + (high code - offset) xh for the byte holding values j and j + 16."""
    byte = I32(qs[row, b, j])
    return np.float32(I32((byte & LOW) - offset)) * xl + np.float32(I32((byte >> SHIFT) - offset)) * xh


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q8_0(x, d_bits, qs, f16, out, width):
    """x float32 [m, nb, 32]; d_bits uint16 [n, nb]; qs int8 [n, nb, 32]; out float32 [m, n]; width
    = 32 lanes, one per value of a block. (Pairing values j and j + 16 in 16 lanes, as gemv_q4 must
    for its nibbles, added a second code range per row to the vectorizer's run-time alias checks, whose
    cost made LLVM require 32 iterations: the 16-iteration loop ran scalar, 17 against 2.8 ns a
    block and row on an AVX2 EPYC.)"""
    m = x.shape[0]
    n, nb = d_bits.shape
    for task in prange((n + ROW_GROUP - 1) // ROW_GROUP):
        r0, r1, r2, r3 = group_rows(task, n)
        a0, a1 = np.empty(width, np.float32), np.empty(width, np.float32)
        a2, a3 = np.empty(width, np.float32), np.empty(width, np.float32)
        for r in range(m):
            a0[:] = 0.0
            a1[:] = 0.0
            a2[:] = 0.0
            a3[:] = 0.0
            for b in range(nb):
                d0, d1 = f16[d_bits[r0, b]], f16[d_bits[r1, b]]
                d2, d3 = f16[d_bits[r2, b]], f16[d_bits[r3, b]]
                for j in range(width):
                    xj = x[r, b, j]
                    a0[j] += d0 * (np.float32(qs[r0, b, j]) * xj)
                    a1[j] += d1 * (np.float32(qs[r1, b, j]) * xj)
                    a2[j] += d2 * (np.float32(qs[r2, b, j]) * xj)
                    a3[j] += d3 * (np.float32(qs[r3, b, j]) * xj)
            store_group(out, r, r0, n, a0, a1, a2, a3)


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_q4(x, xsum, d_bits, m_bits, qs, f16, out, half, offset):
    """q4_0 (m_bits empty, offset 8) and q4_1 (offset 0, plus each block's minimum times xsum, the
    block's activation sum). x float32 [m, nb, 32], xsum float32 [m, nb]; d_bits, m_bits uint16
    [n, nb]; qs uint8 nibbles [n, nb, 16] (byte j: value j low, value j + 16 high); out float32 [m, n]."""
    with_min = m_bits.shape[0] > 0
    m = x.shape[0]
    n, nb = d_bits.shape
    for task in prange((n + ROW_GROUP - 1) // ROW_GROUP):
        r0, r1, r2, r3 = group_rows(task, n)
        a0, a1 = np.empty(half, np.float32), np.empty(half, np.float32)
        a2, a3 = np.empty(half, np.float32), np.empty(half, np.float32)
        for r in range(m):
            a0[:] = 0.0
            a1[:] = 0.0
            a2[:] = 0.0
            a3[:] = 0.0
            for b in range(nb):
                d0, d1 = f16[d_bits[r0, b]], f16[d_bits[r1, b]]
                d2, d3 = f16[d_bits[r2, b]], f16[d_bits[r3, b]]
                for j in range(half):
                    xl, xh = x[r, b, j], x[r, b, j + half]
                    a0[j] += d0 * q4_pair(qs, r0, b, j, xl, xh, offset)
                    a1[j] += d1 * q4_pair(qs, r1, b, j, xl, xh, offset)
                    a2[j] += d2 * q4_pair(qs, r2, b, j, xl, xh, offset)
                    a3[j] += d3 * q4_pair(qs, r3, b, j, xl, xh, offset)
            if with_min:
                for b in range(nb):
                    a0[0] += f16[m_bits[r0, b]] * xsum[r, b]
                    a1[0] += f16[m_bits[r1, b]] * xsum[r, b]
                    a2[0] += f16[m_bits[r2, b]] * xsum[r, b]
                    a3[0] += f16[m_bits[r3, b]] * xsum[r, b]
            store_group(out, r, r0, n, a0, a1, a2, a3)


# ---- tile decoders: wt[kk, nn] = W[n0 + nn, k0 + kk] ---------------------------------------------
@njit(cache=True)
def decode_tile_q8_0(d_bits, qs, f16, n0, nt, k0, kc, wt):
    for nn in range(nt):
        for b in range(k0 // 32, (k0 + kc) // 32):
            d = f16[d_bits[n0 + nn, b]]
            base = b * 32 - k0
            for j in range(32):
                wt[base + j, nn] = np.float32(qs[n0 + nn, b, j]) * d


@njit(cache=True)
def decode_tile_q4(d_bits, m_bits, qs, f16, n0, nt, k0, kc, wt, offset):
    """q4_0 (m_bits empty, offset 8) and q4_1 (offset 0, plus the block minimum)."""
    with_min = m_bits.shape[0] > 0
    for nn in range(nt):
        for b in range(k0 // 32, (k0 + kc) // 32):
            d = f16[d_bits[n0 + nn, b]]
            mn = f16[m_bits[n0 + nn, b]] if with_min else np.float32(0.0)
            base = b * 32 - k0
            for j in range(16):
                byte = np.int32(qs[n0 + nn, b, j])
                wt[base + j, nn] = np.float32((byte & LOW) - offset) * d + mn
                wt[base + j + 16, nn] = np.float32((byte >> SHIFT) - offset) * d + mn


def spread_table() -> np.ndarray:
    """uint64 [256]: bit t of a byte moved to bit 8t, so that OR-ing the spread bytes of the code
    planes, shifted by their plane number, gives the eight codes of a byte position, one per byte."""
    table = np.zeros(256, np.uint64)
    for value in range(256):
        for t in range(8):
            table[value] |= np.uint64(((value >> t) & 1) << (8 * t))
    return table


@njit(inline="always")
def eight_codes(codes, row, grp, byte, spread):
    """The codes of values 8 byte .. 8 byte + 7 of a group, byte t of the result holding value t's."""
    packed = np.uint64(0)
    for p in range(codes.shape[2]):
        packed |= spread[codes[row, grp, p, byte]] << np.uint64(p)
    return packed


@njit(cache=True)
def decode_tile_turbo(codes, norms, levels, f16, spread, n0, nt, k0, kc, wt):
    """codes uint8 [n, G, bits, g/8] bit planes, norms uint16 [n, G]: norm * codebook[code],
    the weight in its rotated domain."""
    nbytes = codes.shape[3]
    g = nbytes * 8
    for nn in range(nt):
        for grp in range(k0 // g, (k0 + kc) // g):
            norm = f16[norms[n0 + nn, grp]]
            base = grp * g - k0
            for byte in range(nbytes):
                packed = eight_codes(codes, n0 + nn, grp, byte, spread)
                for t in range(8):
                    code = (packed >> np.uint64(8 * t)) & np.uint64(0xFF)
                    wt[base + byte * 8 + t, nn] = levels[code] * norm


@njit(parallel=True, cache=True, fastmath=FAST)
def gemv_turbo(xr, codes, norms, levels, f16, spread, out):
    """xr float32 [m, G, g]: the rotated activation groups; out float32 [m, n]."""
    m = xr.shape[0]
    n, ngroups, _, nbytes = codes.shape
    for task in prange(row_tasks(n)):
        for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            for r in range(m):
                total = np.float32(0.0)
                for grp in range(ngroups):
                    s = np.float32(0.0)
                    for byte in range(nbytes):
                        packed = eight_codes(codes, row, grp, byte, spread)
                        for t in range(8):
                            s += levels[(packed >> np.uint64(8 * t)) & np.uint64(0xFF)] * xr[r, grp, byte * 8 + t]
                    total += f16[norms[row, grp]] * s
                out[r, row] = total


@njit(cache=True, fastmath=FAST)
def multiply_tile(xa, wt, nt, k0, kc, acc, out, n0):
    """out[r, n0 + nn] += sum_kk xa[r, k0 + kk] * wt[kk, nn] for every row r, nn < nt: 16 rows kk of
    the tile at a time with the sums in registers (tile_axpy; kc is a multiple of 32, as every block
    and turbo group is, and lanes past nt, which read stale tile columns, are dropped). As a loop
    over kk and nn the sums went through memory at every kk, one store-to-load chain per row: 15.4
    against 3.8 ms (NT = 16) for q4_0 at m=128, n=1536, k=576 on the AVX2 EPYC."""
    k, width = xa.shape[1], wt.shape[1]
    for r in range(xa.shape[0]):
        acc[:] = 0.0
        for kk in range(0, kc, TILE_ROWS):
            tile_axpy(acc, 0, 0, 1, xa, r * k + k0 + kk, 0, wt, kk * width, width)
        for nn in range(nt):
            out[r, n0 + nn] += acc[nn]


# ---- tiled drivers, one per decoder (numba cannot pass the decoder in without recompiling) --------
@njit(parallel=True, cache=True, fastmath=FAST)
def tiled_q8_0(xa, d_bits, qs, f16, out, nt_max, kc_max):
    n, k = d_bits.shape[0], xa.shape[1]
    out[:, :] = 0.0
    for tile in prange((n + nt_max - 1) // nt_max):
        wt = np.empty((kc_max, nt_max), np.float32)
        acc = np.empty(nt_max, np.float32)
        n0 = tile * nt_max
        nt = min(nt_max, n - n0)
        for k0 in range(0, k, kc_max):
            kc = min(kc_max, k - k0)
            decode_tile_q8_0(d_bits, qs, f16, n0, nt, k0, kc, wt)
            multiply_tile(xa, wt, nt, k0, kc, acc, out, n0)


@njit(parallel=True, cache=True, fastmath=FAST)
def tiled_q4(xa, d_bits, m_bits, qs, f16, out, offset, nt_max, kc_max):
    n, k = d_bits.shape[0], xa.shape[1]
    out[:, :] = 0.0
    for tile in prange((n + nt_max - 1) // nt_max):
        wt = np.empty((kc_max, nt_max), np.float32)
        acc = np.empty(nt_max, np.float32)
        n0 = tile * nt_max
        nt = min(nt_max, n - n0)
        for k0 in range(0, k, kc_max):
            kc = min(kc_max, k - k0)
            decode_tile_q4(d_bits, m_bits, qs, f16, n0, nt, k0, kc, wt, offset)
            multiply_tile(xa, wt, nt, k0, kc, acc, out, n0)


@njit(parallel=True, cache=True, fastmath=FAST)
def tiled_turbo(xa, codes, norms, levels, f16, spread, out, nt_max, kc_max):
    n, k = codes.shape[0], xa.shape[1]
    out[:, :] = 0.0
    for tile in prange((n + nt_max - 1) // nt_max):
        wt = np.empty((kc_max, nt_max), np.float32)
        acc = np.empty(nt_max, np.float32)
        n0 = tile * nt_max
        nt = min(nt_max, n - n0)
        for k0 in range(0, k, kc_max):
            kc = min(kc_max, k - k0)
            decode_tile_turbo(codes, norms, levels, f16, spread, n0, nt, k0, kc, wt)
            multiply_tile(xa, wt, nt, k0, kc, acc, out, n0)
