"""Decoding one stored KV row into the codes' domain, inside the numba attention kernels.

A row is one position of one (batch, kv_head); its packed bytes come as the [ctx, rows, units,
bytes] views of kernels/attention/layout.NativePlan.rows. The row is decoded into a float32 buffer
of the plan's width (never the whole cache): blocks as scale * code (+ min), turbo as norm *
codebook level in the rotated domain, turbo4 followed by its QJL signs times qjl_scale * residual
norm. Every loop is written for LLVM's vectorizer: fp16 scales from a 64K-entry float32 table,
innermost indices that are the loop's own variable, levels picked by a select tree on the code's
bits from scalars. decode_row compiles to one decoder per format kind and bit width, so a kernel
inlines and types only its format's code: the q8_0 native kernel compiled in 4.5 s instead of 8.4
when the IR of all six formats was inlined twice (K and V) and then pruned by literal kind.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from quantbench.kernels.attention.layout import KIND_Q4_1, KIND_Q8_0, KIND_TURBO
from quantbench.kernels.common.numba_f16 import f16_table

F16 = f16_table()  # a module-level array: numba compiles it in as a constant
# numba#9489 (open): on Python 3.11 an overload inlined with inline="always" whose code holds
# conditional expressions (the select trees below) trips a pedantic SSA scope check, one warning per
# inlined copy; the compiled code is unaffected. Not inlined, turbo3 attention at depth 1024 took
# 631 us a call instead of 410.
warnings.filterwarnings("ignore", message=r".*variable '_turbo_decoder__locals__decode\S* is not in scope",
                        category=NumbaIRAssumptionWarning)


def padded_levels(codebook: np.ndarray) -> np.ndarray:
    """A codebook as the 16 float32 levels decode_row reads (zeros past its end: no code reaches them)."""
    out = np.zeros(16, np.float32)
    out[:codebook.size] = codebook
    return out


@njit(cache=True, inline="always")
def row_buffers(width, dim):
    """The float32 row buffer [width] and its views decode_row writes through: [dim/8, 8] (turbo),
    [dim/32, 32] (q8_0) and [dim/32, 2, 16] (4-bit blocks). Made once per kernel task."""
    out = np.empty(width, np.float32)
    blocks = dim // 32
    return (out, out[:dim // 8 * 8].reshape((dim // 8, 8)), out[:blocks * 32].reshape((blocks, 32)),
            out[:blocks * 32].reshape((blocks, 2, 16)))


def decode_row(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32, halves):
    """Row (pos, r) into out, written through its row_buffers views so that every innermost loop
    indexes by its own variable (a computed index costs a wraparound check that keeps LLVM from
    vectorizing the loop). For numba kernels only, with kind and bits compile-time constants (the
    kernels close over them): numba compiles in the one decoder of that format."""
    raise NotImplementedError("decode_row is compiled into numba kernels; it does not run in Python")


@overload(decode_row, inline="always")
def _decode_row_of_format(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32,
                          halves):
    if not (isinstance(kind, types.IntegerLiteral) and isinstance(bits, types.IntegerLiteral)):
        return None  # numba types the call again with the literal values
    return row_decoder(kind.literal_value, bits.literal_value)


@functools.cache
def row_decoder(kind: int, bits: int):
    """The Python source numba compiles in for one format kind and bit width (decode_row's arguments).
    The kernels reach it through decode_row rather than closing over a compiled decoder: a closure
    over a compiled function gets a new cache key in every process, and numba's disk cache missed."""
    if kind == KIND_TURBO:
        return _turbo_decoder({2: _levels_2, 3: _levels_3, 4: _levels_4}[bits])
    return {KIND_Q8_0: _decode_q8_0, KIND_Q4_1: _decode_q4_1}.get(kind, _decode_q4_0)


def _turbo_decoder(select_levels):
    """norm * codebook level per code, then (turbo4) the QJL signs times qjl_coef * residual norm."""

    def decode(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32, halves):
        nbytes = cg // 8
        c = (levels[0], levels[1], levels[2], levels[3], levels[4], levels[5], levels[6], levels[7],
             levels[8], levels[9], levels[10], levels[11], levels[12], levels[13], levels[14], levels[15])
        for grp in range(dim // cg):
            norm = F16[s1[pos, r, grp]]
            for byte in range(nbytes):
                select_levels(codes, pos, r, grp * bits, byte, c, norm, by8[grp * nbytes + byte])
        if qjl_coef != 0.0:
            for grp in range(dim // cg):
                a = np.float32(qjl_coef) * F16[s2[pos, r, grp]]
                for byte in range(nbytes):
                    signs = extra[pos, r, grp * nbytes + byte]
                    first = dim + grp * cg + byte * 8
                    for t in range(8):
                        out[first + t] = a if (signs >> t) & 1 else -a

    return decode


def _decode_q8_0(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32, halves):
    for b in range(codes.shape[2]):
        d = F16[s1[pos, r, b]]
        for i in range(codes.shape[3]):
            by32[b, i] = d * np.float32(np.int8(codes[pos, r, b, i]))


def _decode_q4_1(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32, halves):
    for b in range(codes.shape[2]):
        d = F16[s1[pos, r, b]]
        m = F16[s2[pos, r, b]]
        for j in range(codes.shape[3]):
            c = np.int32(codes[pos, r, b, j])
            halves[b, 0, j] = d * np.float32(c & 15) + m
            halves[b, 1, j] = d * np.float32(c >> 4) + m


def _decode_q4_0(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, by8, by32, halves):
    for b in range(codes.shape[2]):
        d = F16[s1[pos, r, b]]
        for j in range(codes.shape[3]):
            c = np.int32(codes[pos, r, b, j])
            halves[b, 0, j] = d * np.float32((c & 15) - 8)
            halves[b, 1, j] = d * np.float32((c >> 4) - 8)


# dst[t] = norm * the level of the code whose bit k is bit t of plane (unit + k)'s byte, by a select
# tree on the bits, which LLVM vectorizes where a table lookup stays scalar. The levels come as a
# tuple of scalars read once per row: loaded from their float32 array inside the loop they would be
# reloaded after every store to the float32 row (the two might alias).
@njit(cache=True, inline="always")
def _levels_2(codes, pos, r, unit, byte, c, norm, dst):
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    p0 = np.int32(codes[pos, r, unit, byte])
    p1 = np.int32(codes[pos, r, unit + 1, byte])
    for t in range(dst.shape[0]):
        b0, b1 = (p0 >> t) & 1, (p1 >> t) & 1
        dst[t] = ((c1 if b0 else c0) if b1 == 0 else (c3 if b0 else c2)) * norm


@njit(cache=True, inline="always")
def _levels_3(codes, pos, r, unit, byte, c, norm, dst):
    c0, c1, c2, c3, c4, c5, c6, c7 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    p0 = np.int32(codes[pos, r, unit, byte])
    p1 = np.int32(codes[pos, r, unit + 1, byte])
    p2 = np.int32(codes[pos, r, unit + 2, byte])
    for t in range(dst.shape[0]):
        b0, b1, b2 = (p0 >> t) & 1, (p1 >> t) & 1, (p2 >> t) & 1
        low = (c1 if b0 else c0) if b1 == 0 else (c3 if b0 else c2)
        high = (c5 if b0 else c4) if b1 == 0 else (c7 if b0 else c6)
        dst[t] = (high if b2 else low) * norm


@njit(cache=True, inline="always")
def _levels_4(codes, pos, r, unit, byte, c, norm, dst):
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15 = c
    p0 = np.int32(codes[pos, r, unit, byte])
    p1 = np.int32(codes[pos, r, unit + 1, byte])
    p2 = np.int32(codes[pos, r, unit + 2, byte])
    p3 = np.int32(codes[pos, r, unit + 3, byte])
    for t in range(dst.shape[0]):
        b0, b1, b2, b3 = (p0 >> t) & 1, (p1 >> t) & 1, (p2 >> t) & 1, (p3 >> t) & 1
        q0 = (c1 if b0 else c0) if b1 == 0 else (c3 if b0 else c2)
        q1 = (c5 if b0 else c4) if b1 == 0 else (c7 if b0 else c6)
        q2 = (c9 if b0 else c8) if b1 == 0 else (c11 if b0 else c10)
        q3 = (c13 if b0 else c12) if b1 == 0 else (c15 if b0 else c14)
        dst[t] = ((q3 if b2 else q2) if b3 else (q1 if b2 else q0)) * norm
