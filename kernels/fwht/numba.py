"""Numba CPU fast Walsh-Hadamard transform: the op `fwht`, and the lane-batched butterflies the
rotated-format kernels share (fwht_lanes, load_lanes, LANES, BATCHES_PER_TASK).

Rows are transformed `lanes` at a time, transposed into a [g, lanes] buffer: every butterfly is
then a SIMD operation across rows, the short early stages (h = 1, 2, 4) included, which a
row-at-a-time loop cannot vectorize. `lanes` must reach the kernels as a runtime argument: numba
leaves LLVM's SLP vectorizer off, and a loop with a small constant trip count is fully unrolled
into scalar code before the loop vectorizer sees it. The butterflies run in the order of
kernels/formats/rotation.py (stages h = 1, 2, 4, ...; a+b, a-b), then one multiply by float32(1/sqrt(g)),
so the float32 results equal the torch reference bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.formats.base import FormatError
from quantbench.kernels.formats.rotation import is_power_of_two
from quantbench.kernels.registry import variant

LANES = 32  # rows per SIMD batch (the [g, LANES] buffers stay in L1 up to g = 256)
BATCHES_PER_TASK = 4  # prange granularity


@njit(cache=True, inline="always")
def fwht_lanes(y, scale):
    """Orthonormal FWHT down the columns of the float32 buffer y [g, lanes], in place."""
    g, lanes = y.shape
    h = 1
    while h < g:
        for j in range(0, g, 2 * h):
            for i in range(j, j + h):
                for lane in range(lanes):
                    a = y[i, lane]
                    b = y[i + h, lane]
                    y[i, lane] = a + b
                    y[i + h, lane] = a - b
        h *= 2
    for i in range(g):
        for lane in range(lanes):
            y[i, lane] *= scale


@njit(cache=True, inline="always")
def load_lanes(x, base, count, y):
    """Rows base .. base+count-1 of x into the columns of y; the other columns are zero."""
    y[:, :] = 0.0
    for lane in range(count):
        for i in range(x.shape[1]):
            y[i, lane] = x[base + lane, i]


@njit(parallel=True, cache=True)
def fwht_rows(x, lanes, out):
    rows, g = x.shape
    scale = np.float32(1.0 / np.sqrt(g))
    batches = (rows + lanes - 1) // lanes
    for task in prange((batches + BATCHES_PER_TASK - 1) // BATCHES_PER_TASK):
        y = np.empty((g, lanes), np.float32)
        for batch in range(task * BATCHES_PER_TASK, min(batches, (task + 1) * BATCHES_PER_TASK)):
            base = batch * lanes
            count = min(lanes, rows - base)
            load_lanes(x, base, count, y)
            fwht_lanes(y, scale)
            for lane in range(count):
                for i in range(g):
                    out[base + lane, i] = y[i, lane]


@variant("fwht", backend="numba", name="parallel", needs=("numba",))
def fwht_numba(case):
    """butterflies across 32 rows at a time (SIMD lanes), prange over row blocks"""
    x = case.inputs()["x"].to(torch.float32).contiguous()
    g = x.shape[-1]
    if not is_power_of_two(g):
        raise FormatError(f"fwht: last dimension {g} is not a power of two")
    src = x.reshape(-1, g).numpy()
    out = np.empty_like(src)

    def run():
        fwht_rows(src, LANES, out)
        return torch.from_numpy(out).reshape(x.shape)

    return run
