"""Decoding one stored KV row into the codes' domain, inside the numba attention kernels.

A row is one position of one (batch, kv_head); its packed bytes come as the [ctx, rows, bytes]
views of kernels/attention/layout.NativePlan.rows. The row is decoded into a float32 buffer of the
plan's width (never the whole cache): blocks as scale * code (+ min), turbo as norm * codebook
level in the rotated domain, turbo4 followed by its QJL signs times qjl_scale * residual norm.

Turbo bit planes are expanded eight values at a time: SPREAD[b] puts bit t of byte b into byte t
of a 64-bit word, so OR-ing the spread planes, shifted by plane index, yields eight codes as
eight bytes of one word (three table loads for eight 3-bit codes instead of 24 bit extractions).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from quantbench.kernels.attention.layout import KIND_Q4_0, KIND_Q4_1, KIND_Q8_0, KIND_TURBO
from quantbench.kernels.common.numba_f16 import f16_bits_to_f32


def _spread_table() -> np.ndarray:
    table = np.zeros(256, np.uint64)
    for b in range(256):
        word = 0
        for t in range(8):
            word |= ((b >> t) & 1) << (8 * t)
        table[b] = word
    return table


SPREAD = _spread_table()


@njit(cache=True, inline="always")
def decode_row(kind, codes, extra, s1, s2, pos, r, dim, bits, cg, codebook, qjl_coef, spread, out):
    if kind == KIND_TURBO:
        nbytes = cg // 8
        for grp in range(dim // cg):
            norm = f16_bits_to_f32(s1[pos, r, grp])
            base = grp * bits * nbytes
            for byte in range(nbytes):
                word = np.uint64(0)
                for k in range(bits):
                    word |= spread[codes[pos, r, base + k * nbytes + byte]] << np.uint64(k)
                first = grp * cg + byte * 8
                for t in range(8):
                    out[first + t] = codebook[(word >> np.uint64(8 * t)) & np.uint64(0xFF)] * norm
        if qjl_coef != 0.0:
            for grp in range(dim // cg):
                a = np.float32(qjl_coef) * f16_bits_to_f32(s2[pos, r, grp])
                for byte in range(nbytes):
                    signs = extra[pos, r, grp * nbytes + byte]
                    first = dim + grp * cg + byte * 8
                    for t in range(8):
                        out[first + t] = a if (signs >> t) & 1 else -a
    elif kind == KIND_Q8_0:
        for blk in range(dim // 32):
            d = f16_bits_to_f32(s1[pos, r, blk])
            for i in range(32):
                c = np.int32(codes[pos, r, blk * 32 + i])
                out[blk * 32 + i] = d * np.float32(c - 256 if c >= 128 else c)
    elif kind == KIND_Q4_0:
        for blk in range(dim // 32):
            d = f16_bits_to_f32(s1[pos, r, blk])
            for j in range(16):
                c = np.int32(codes[pos, r, blk * 16 + j])
                out[blk * 32 + j] = d * np.float32((c & 15) - 8)
                out[blk * 32 + j + 16] = d * np.float32((c >> 4) - 8)
    elif kind == KIND_Q4_1:
        for blk in range(dim // 32):
            d = f16_bits_to_f32(s1[pos, r, blk])
            m = f16_bits_to_f32(s2[pos, r, blk])
            for j in range(16):
                c = np.int32(codes[pos, r, blk * 16 + j])
                out[blk * 32 + j] = d * np.float32(c & 15) + m
                out[blk * 32 + j + 16] = d * np.float32(c >> 4) + m
