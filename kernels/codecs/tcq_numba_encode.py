"""Numba encode of the TCQ formats, fused: the rotation, the trellis search, the stream packing, the
norm correction and the fp16 norm, in one compiled call per KV-cache write.

The torch encoder (formats/turbo_tcq.py) runs these as separate steps with arrays in between; a
one-token write of three groups then cost about 210 us on a 2-core EPYC, of which the search was
55 us: the rest was dispatch, thread-count switches and numpy around the kernels. Here a call
below the parallel threshold goes to `tcq_encode_serial`, a plain compiled function (no thread
pool, no thread-count switch); larger ones to `tcq_encode_parallel`.

The float32 steps are the reference's, in order; the float64 sums (the norm and the norm
correction) run in index order, which can differ from torch's summation order by a float64
rounding, invisible after the norm's rounding to fp16 (the codec tests compare bit for bit).
Both entries return the largest float64 norm, so that the caller raises where the reference does
(a norm above the fp16 range) after the call.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.common.numba_f16 import f32_to_f16_bits
from quantbench.kernels.formats.trellis_numba import (
    SEARCH_BATCH,
    greedy_group,
    pack_group,
    search_scratch,
    viterbi_tailbiting_batch,
)
from quantbench.kernels.fwht.numba import fwht_lanes


@njit(cache=True)
def trellis_inputs(x, signs, rotate, lanes, v, norms):
    """x float32 [G, g] -> what the trellis search sees, formats/turbo_tcq.trellis_inputs step for
    step: norms float64 [G] (the sum of squares in float64), v = sqrt(g) * FWHT(signs * x / norm)
    float32 [G, g], each float32 step rounded as torch rounds it (lane-batched FWHT, fwht_numba)."""
    G, g = x.shape
    scale = np.float32(1.0 / np.sqrt(g))
    root = np.float32(np.sqrt(g))
    y = np.empty((g, lanes), np.float32)
    for base in range(0, G, lanes):
        count = min(lanes, G - base)
        y[:, :] = 0.0
        for lane in range(count):
            total = 0.0
            for i in range(g):
                total += np.float64(x[base + lane, i]) ** 2
            norms[base + lane] = np.sqrt(total)
            norm32 = np.float32(norms[base + lane])
            d = norm32 if norm32 > 0 else np.float32(1.0)
            for i in range(g):
                y[i, lane] = (x[base + lane, i] / d) * signs[i]
        if rotate:
            fwht_lanes(y, scale)
        for lane in range(count):
            for i in range(g):
                v[base + lane, i] = y[i, lane] * root


@njit(cache=True)
def _encode_range(first, last, x, signs, rotate, lanes, table, levels, k, L, greedy, norm_correction,
                  codes, norms):
    """Groups first..last-1 of x [G, g] -> codes [G, g*k/8] uint8 and norms [G] (fp16 bits); returns
    the largest float64 norm stored (NaN norms are not counted, as `norm > limit` is false for them)."""
    g = x.shape[1]
    v = np.empty((lanes, g), np.float32)
    norm = np.empty(lanes, np.float64)
    paths = np.empty((lanes, g), np.int32)
    scratch = search_scratch(SEARCH_BATCH, g, k, L)
    worst = 0.0
    for base in range(first, last, lanes):
        count = min(lanes, last - base)
        trellis_inputs(x[base:base + count], signs, rotate, lanes, v, norm)
        if greedy:
            for lane in range(count):
                greedy_group(v[lane], table, k, L, paths[lane])
        else:
            for lo in range(0, count, SEARCH_BATCH):
                hi = min(count, lo + SEARCH_BATCH)
                viterbi_tailbiting_batch(v[lo:hi], table, k, L, scratch, paths[lo:hi])
        for lane in range(count):
            states = paths[lane]
            pack_group(states, k, codes[base + lane])
            stored = norm[lane]
            if norm_correction:
                total = 0.0
                for i in range(g):
                    level = np.float64(levels[states[i]])
                    total += level * level
                stored = stored / np.sqrt(total)
            if stored > worst:
                worst = stored
            norms[base + lane] = f32_to_f16_bits(np.float32(stored))
    return worst


@njit(cache=True)
def tcq_encode_serial(x, signs, rotate, lanes, table, levels, k, L, greedy, norm_correction, codes, norms):
    """Encode every group of x [G, g] on the calling thread (see _encode_range)."""
    return _encode_range(0, x.shape[0], x, signs, rotate, lanes, table, levels, k, L, greedy, norm_correction,
                         codes, norms)


@njit(parallel=True, cache=True)
def tcq_encode_parallel(x, signs, rotate, lanes, table, levels, k, L, greedy, norm_correction, codes, norms):
    """Encode every group of x [G, g], batches of `lanes` groups spread over numba's threads."""
    G = x.shape[0]
    batches = (G + lanes - 1) // lanes
    worst = np.zeros(max(batches, 1))
    for batch in prange(batches):
        worst[batch] = _encode_range(batch * lanes, min(G, (batch + 1) * lanes), x, signs, rotate, lanes, table,
                                     levels, k, L, greedy, norm_correction, codes, norms)
    return worst.max()
