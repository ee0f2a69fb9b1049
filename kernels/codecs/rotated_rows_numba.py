"""Numba dequantize of the rotated formats a row at a time: turbo without QJL (turbo2, turbo3,
turbo4_mse) and the TCQ formats.

Each group's codes go straight into its output row through the explicit-SIMD decoders of
kernels/common (norm * level: numba_vectors.planes_to_f32 for turbo's bit planes,
numba_trellis.trellis_to_f32 for a trellis stream), and the row is then transformed in vector
registers (kernels/fwht/numba_row.unrotate_row). The lane-batched kernels (turbo_numba.turbo_dequantize,
tcq_numba.decode_groups) move every value through a [g, 32] buffer and two transposes; at the
model's shape (3456 groups of 64, one layer's K at depth 1152) on an AVX-512 Xeon they took 117 and
157 ns a group on one thread. The float32 operations are the references', in their order, so the
values are the same bit for bit. The formats' groups (a power of two from 32 to 256 values,
formats/base.py) all fit: unrotate holds up to 256 values in registers, and a trellis stream of 32
values has the 3 bytes its shift register starts from (numba_trellis.WRAP_BITS).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.common.numba_f16 import f16_table
from quantbench.kernels.common.numba_trellis import trellis_to_f32
from quantbench.kernels.common.numba_vectors import planes_to_f32
from quantbench.kernels.fwht.numba_row import unrotate
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import is_tcq

F16 = f16_table()
ROWS_PER_TASK = 64  # a task's rows (16 KB of output at g = 64) stay in L1 from decode to transform


def padded_codebook(codebook: np.ndarray) -> np.ndarray:
    """A turbo codebook as planes_to_f32 reads it: 16 float32 levels, zeros past its end."""
    out = np.zeros(max(16, codebook.size), np.float32)
    out[:codebook.size] = codebook
    return out


@njit(cache=True, inline="always")
def _unrotate_rows(out, first, count, signs, rotate):
    """The inverse rotation of rows first .. first + count - 1 of out [G, g], each in registers."""
    g = out.shape[1]
    scale = np.float32(1.0 / np.sqrt(g))
    for r in range(first, first + count):
        unrotate(out, r * g, g, scale, signs, rotate)


@njit(cache=True, inline="always")
def _planes(codes, first, count, norms, bits, levels, out):
    """Rows first .. first + count - 1 of turbo_rows, decoded (a literal bit width per branch)."""
    nb = codes.shape[2]
    g = out.shape[1]
    src, src_step, at = first * bits * nb, bits * nb, first * g
    if bits == 3:
        planes_to_f32(codes, src, src_step, norms, first, 1, F16, g, count, out, at, g, nb, 3, levels)
    elif bits == 2:
        planes_to_f32(codes, src, src_step, norms, first, 1, F16, g, count, out, at, g, nb, 2, levels)
    elif bits == 4:
        planes_to_f32(codes, src, src_step, norms, first, 1, F16, g, count, out, at, g, nb, 4, levels)
    else:
        planes_to_f32(codes, src, src_step, norms, first, 1, F16, g, count, out, at, g, nb, 1, levels)


@njit(parallel=True, cache=True)
def turbo_rows(codes, norms, levels, signs, rotate, out):
    """codes [G, bits, g/8] uint8 (bit planes), norms [G] uint16 (fp16 bits) -> out [G, g] float32 =
    signs * FWHT(norm * levels[code]) (levels: padded_codebook)."""
    G, bits = codes.shape[0], codes.shape[1]
    for task in prange((G + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        count = min(ROWS_PER_TASK, G - first)
        _planes(codes, first, count, norms, bits, levels, out)
        _unrotate_rows(out, first, count, signs, rotate)


@njit(cache=True, inline="always")
def _trellis(codes, first, count, norms, k, levels, out):
    """Rows first .. first + count - 1 of tcq_rows, decoded (a literal bit width per branch)."""
    nb = codes.shape[1]
    g = out.shape[1]
    src, at = first * nb, first * g
    if k == 3:
        trellis_to_f32(codes, src, nb, norms, first, 1, F16, g, count, out, at, g, 3, levels)
    elif k == 2:
        trellis_to_f32(codes, src, nb, norms, first, 1, F16, g, count, out, at, g, 2, levels)
    elif k == 4:
        trellis_to_f32(codes, src, nb, norms, first, 1, F16, g, count, out, at, g, 4, levels)
    else:
        trellis_to_f32(codes, src, nb, norms, first, 1, F16, g, count, out, at, g, 1, levels)


@njit(parallel=True, cache=True)
def tcq_rows(codes, norms, k, levels, signs, rotate, out):
    """codes [G, g*k/8] uint8 (tail-biting streams), norms [G] uint16 (fp16 bits) -> out [G, g]
    float32 = signs * FWHT(norm * levels[state]) (levels: the 2^L states')."""
    G = codes.shape[0]
    for task in prange((G + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        count = min(ROWS_PER_TASK, G - first)
        _trellis(codes, first, count, norms, k, levels, out)
        _unrotate_rows(out, first, count, signs, rotate)


def _fp16_bits(t: torch.Tensor) -> np.ndarray:
    return t.reshape(-1).view(torch.int16).numpy().view(np.uint16)


def _serves_turbo(fmt) -> bool:
    return fmt.name in ("turbo2", "turbo3", "turbo4_mse")


@variant("dequantize", backend="numba", name="rows", formats=lambda fmt: _serves_turbo(fmt) or is_tcq(fmt),
         needs=("numba",))
def dequantize_rows_numba(case):
    """a group at a time: SIMD decode of the codes into its row, the inverse FWHT in vector registers"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"])
    g = fmt.group_for(packed.shape[-1])
    groups = math.prod(packed.shape) // g
    out = np.empty((groups, g), np.float32)
    signs = fmt.sign_vector(g).numpy()
    norms = _fp16_bits(packed["norms"])
    if is_tcq(fmt):
        codes = packed["codes"].reshape(groups, g * fmt.bits // 8).numpy()
        levels = fmt.levels(g)

        def decode():
            tcq_rows(codes, norms, fmt.trellis.k, levels, signs, fmt.rotate, out)
    else:
        codes = packed["codes"].reshape(groups, fmt.bits, g // 8).numpy()
        levels = padded_codebook(fmt.codebook(g).numpy())

        def decode():
            turbo_rows(codes, norms, levels, signs, fmt.rotate, out)

    dtype = case.torch_dtype

    def run():
        decode()
        return torch.from_numpy(out).reshape(packed.shape).to(dtype)

    return run
