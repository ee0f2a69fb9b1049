"""Decoding one stored KV row into the codes' domain, inside the numba attention kernels.

A row is one position of one (batch, kv_head); its packed bytes come as the [ctx, rows, units,
bytes] views of kernels/attention/layout.NativePlan.rows (C-contiguous). The row is decoded into a
flat float32 buffer from an offset, the plan's width of values (never the whole cache): blocks as
scale * code (+ min), turbo as norm * codebook level in the rotated domain, turbo4 followed by its
QJL signs times qjl_scale * residual norm. The codes go through the explicit-SIMD decoders of
kernels/common/numba_vectors.py, a block or a code group at a time; fp16 scales come from a
64K-entry float32 table. decode_row compiles to one decoder per format kind and bit width, so a
kernel inlines and types only its format's code: the q8_0 native kernel compiled in 4.5 s instead
of 8.4 when the IR of all six formats was inlined twice (K and V) and then pruned by literal kind.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, types
from numba.extending import overload

from quantbench.kernels.attention.layout import KIND_Q4_1, KIND_Q8_0, KIND_TCQ, KIND_TURBO
from quantbench.kernels.common.numba_f16 import f16_table
from quantbench.kernels.common.numba_vectors import int8_to_f32, nibbles_to_f32, planes_to_f32, trellis_to_f32

F16 = f16_table()  # a module-level array: numba compiles it in as a constant


def padded_levels(codebook: np.ndarray) -> np.ndarray:
    """A codebook as the float32 levels decode_row reads: at least 16 (zeros past its end: no code
    reaches them); a trellis table of 2^L levels as it is."""
    out = np.zeros(max(16, codebook.size), np.float32)
    out[:codebook.size] = codebook
    return out


def decode_row(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    """Row (pos, r) into out[at:at + width] (out flat). For numba kernels only, with kind and bits
    compile-time constants (the kernels close over them): numba compiles in the one decoder of that format."""
    raise NotImplementedError("decode_row is compiled into numba kernels; it does not run in Python")


@overload(decode_row, inline="always")
def _decode_row_of_format(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    if not (isinstance(kind, types.IntegerLiteral) and isinstance(bits, types.IntegerLiteral)):
        return None  # numba types the call again with the literal values
    return row_decoder(kind.literal_value, bits.literal_value)


@functools.cache
def row_decoder(kind: int, bits: int):
    """The Python source numba compiles in for one format kind and bit width (decode_row's arguments).
    The kernels reach it through decode_row rather than closing over a compiled decoder: a closure
    over a compiled function gets a new cache key in every process, and numba's disk cache missed."""
    if kind == KIND_TURBO:
        return _decode_turbo
    return {KIND_Q8_0: _decode_q8_0, KIND_Q4_1: _decode_q4_1, KIND_TCQ: _decode_tcq}.get(kind, _decode_q4_0)


@njit(cache=True, inline="always")
def _row_start(codes, pos, r):
    """Flat byte offset of row (pos, r) in the C-contiguous [ctx, rows, units, bytes] codes."""
    return (pos * codes.shape[1] + r) * codes.shape[2] * codes.shape[3]


def _decode_turbo(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    """norm * codebook level per code, then (turbo4) the QJL signs times qjl_coef * residual norm."""
    nbytes = codes.shape[3]  # of one bit plane: cg / 8
    first = _row_start(codes, pos, r)
    for grp in range(dim // cg):
        norm = F16[s1[pos, r, grp]]
        planes_to_f32(codes, first + grp * bits * nbytes, nbytes, bits, levels, norm, out, at + grp * cg, cg)
    if qjl_coef != 0.0:
        for grp in range(dim // cg):
            a = np.float32(qjl_coef) * F16[s2[pos, r, grp]]
            for byte in range(nbytes):
                signs = extra[pos, r, grp * nbytes + byte]
                first_sign = at + dim + grp * cg + byte * 8
                for t in range(8):
                    out[first_sign + t] = a * np.float32(2 * ((signs >> t) & 1) - 1)  # sign bit 1: +a, 0: -a


def _decode_q8_0(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    first = _row_start(codes, pos, r)
    for b in range(codes.shape[2]):
        int8_to_f32(codes, first + b * 32, out, at + b * 32, F16[s1[pos, r, b]])


def _decode_q4_1(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    first = _row_start(codes, pos, r)
    for b in range(codes.shape[2]):
        nibbles_to_f32(codes, first + b * 16, out, at + b * 32, F16[s1[pos, r, b]], F16[s2[pos, r, b]])


def _decode_q4_0(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    first = _row_start(codes, pos, r)
    for b in range(codes.shape[2]):
        d = F16[s1[pos, r, b]]
        nibbles_to_f32(codes, first + b * 16, out, at + b * 32, d, np.float32(-8.0) * d)


def _decode_tcq(kind, bits, codes, extra, s1, s2, pos, r, dim, cg, levels, qjl_coef, out, at):
    """Trellis (turbo*_tcq): per group of cg values a bit stream of bits (k) bits a value, read by an
    L-bit shift register (levels holds its 2^L states' levels, L <= 24) that starts as the stream's
    last L bits (the tail-biting wrap); level x norm, in the rotated domain (trellis_to_f32)."""
    mask = levels.shape[0] - 1
    last = codes.shape[3] - 1
    first = _row_start(codes, pos, r)
    for grp in range(dim // cg):
        wrap = (np.int64(codes[pos, r, grp, last - 2]) << 16) | (np.int64(codes[pos, r, grp, last - 1]) << 8) | \
            codes[pos, r, grp, last]  # the stream's last 24 bits
        trellis_to_f32(codes, first + grp * codes.shape[3], bits, wrap, levels, mask, F16[s1[pos, r, grp]], out,
                       at + grp * cg, cg)
