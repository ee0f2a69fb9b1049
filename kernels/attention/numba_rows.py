"""Decoding stored KV rows into the codes' domain, inside the numba attention kernels.

A row is one position of one (batch, kv_head); its packed bytes come as the [ctx, rows, units,
bytes] views of kernels/attention/layout.NativePlan.rows (C-contiguous). Rows of consecutive
positions are decoded into a flat float32 buffer from an offset, a row every `stride` values, the
plan's width of values each (never the whole cache): blocks as scale * code (+ min), turbo as
norm * codebook level in the rotated domain, turbo4 followed by its QJL signs times qjl_scale *
residual norm. The codes go through the explicit-SIMD decoders of kernels/common/numba_vectors.py
(numba_trellis.py for the TCQ formats),
each looping over the rows itself; fp16 scales come from a 64K-entry float32 table. decode_rows
compiles to one decoder per format kind and bit width, so a kernel inlines and types only its
format's code: the q8_0 native kernel compiled in 4.5 s instead of 8.4 when the IR of all six
formats was inlined twice (K and V) and then pruned by literal kind.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, types
from numba.extending import overload

from quantbench.kernels.attention.layout import KIND_Q4_1, KIND_Q8_0, KIND_TCQ, KIND_TURBO
from quantbench.kernels.common.numba_f16 import f16_table
from quantbench.kernels.common.numba_trellis import trellis_to_f32
from quantbench.kernels.common.numba_vectors import int8_to_f32, nibbles_to_f32, planes_to_f32

F16 = f16_table()  # a module-level array: numba compiles it in as a constant


def padded_levels(codebook: np.ndarray, qjl_coef: float = 0.0) -> np.ndarray:
    """A codebook as the float32 levels decode_rows reads: at least 16 (zeros past its end: no code
    reaches them); a trellis table of 2^L levels as it is. With QJL (turbo4), 16 more: -qjl_coef and
    +qjl_coef, the two levels of a sign bit, decoded as a 1-bit plane."""
    out = np.zeros(max(16, codebook.size) + (16 if qjl_coef else 0), np.float32)
    out[:codebook.size] = codebook
    if qjl_coef:
        out[16:18] = (-qjl_coef, qjl_coef)
    return out


def decode_rows(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    """Rows (pos + t, r), t < count, into out[at + t * stride:][:width] (out flat). For numba kernels
    only, with kind and bits compile-time constants (the kernels close over them): numba compiles in
    the one decoder of that format."""
    raise NotImplementedError("decode_rows is compiled into numba kernels; it does not run in Python")


@overload(decode_rows, inline="always")
def _decode_rows_of_format(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at,
                           stride):
    if not (isinstance(kind, types.IntegerLiteral) and isinstance(bits, types.IntegerLiteral)):
        return None  # numba types the call again with the literal values
    return row_decoder(kind.literal_value, bits.literal_value)


@functools.cache
def row_decoder(kind: int, bits: int):
    """The Python source numba compiles in for one format kind and bit width (decode_rows' arguments).
    The kernels reach it through decode_rows rather than closing over a compiled decoder: a closure
    over a compiled function gets a new cache key in every process, and numba's disk cache missed."""
    if kind == KIND_TURBO:
        return _decode_turbo
    return {KIND_Q8_0: _decode_q8_0, KIND_Q4_1: _decode_q4_1, KIND_TCQ: _decode_tcq}.get(kind, _decode_q4_0)


@njit(cache=True, inline="always")
def _row_start(codes, pos, r):
    """Flat offset of row (pos, r) in a C-contiguous [ctx, rows, ...] array (codes or scales)."""
    per_row = 1
    for n in codes.shape[2:]:
        per_row *= n
    return (pos * codes.shape[1] + r) * per_row


@njit(cache=True, inline="always")
def _position_stride(codes):
    """Elements from one position's row to the next one's in a C-contiguous [ctx, rows, ...] array."""
    return codes.size // max(codes.shape[0], 1)


def _decode_turbo(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    """norm * codebook level per code, a code group of every row per call; then (turbo4) the QJL
    signs times qjl_coef * residual norm."""
    nbytes = codes.shape[3]  # of one bit plane: cg / 8
    first, step = _row_start(codes, pos, r), _position_stride(codes)
    norms, norm_step = _row_start(s1, pos, r), _position_stride(s1)
    for grp in range(dim // cg):
        planes_to_f32(codes, first + grp * bits * nbytes, step, s1, norms + grp, norm_step, F16, cg, count, out,
                      at + grp * cg, stride, nbytes, bits, levels)
    if qjl_coef != 0.0:  # sign bit 1: +qjl_coef * residual norm, 0: minus that
        signs, sign_step = _row_start(extra, pos, r), _position_stride(extra)
        residuals, residual_step = _row_start(s2, pos, r), _position_stride(s2)
        for grp in range(dim // cg):
            planes_to_f32(extra, signs + grp * nbytes, sign_step, s2, residuals + grp, residual_step, F16, cg, count,
                          out, at + dim + grp * cg, stride, nbytes, 1, levels[16:])


def _decode_q8_0(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    int8_to_f32(codes, _row_start(codes, pos, r), _position_stride(codes), s1, _row_start(s1, pos, r),
                _position_stride(s1), F16, codes.shape[2], count, out, at, stride)


def _decode_q4_1(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    nibbles_to_f32(codes, _row_start(codes, pos, r), _position_stride(codes), s1, _row_start(s1, pos, r),
                   _position_stride(s1), F16, codes.shape[2], count, out, at, stride, s2)


def _decode_q4_0(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    nibbles_to_f32(codes, _row_start(codes, pos, r), _position_stride(codes), s1, _row_start(s1, pos, r),
                   _position_stride(s1), F16, codes.shape[2], count, out, at, stride, None)


def _decode_tcq(kind, bits, codes, extra, s1, s2, pos, count, r, dim, cg, levels, qjl_coef, out, at, stride):
    """Trellis (turbo*_tcq): per group of cg values a bit stream of bits (k) bits a value, read by an
    L-bit shift register (levels holds its 2^L states' levels) that starts as the stream's last bits
    (the tail-biting wrap); level x norm, in the rotated domain, a code group of every row per call
    (numba_trellis.trellis_to_f32)."""
    nbytes = codes.shape[3]
    first, step = _row_start(codes, pos, r), _position_stride(codes)
    norms, norm_step = _row_start(s1, pos, r), _position_stride(s1)
    for grp in range(dim // cg):
        trellis_to_f32(codes, first + grp * nbytes, step, s1, norms + grp, norm_step, F16, cg, count, out,
                       at + grp * cg, stride, bits, levels)
