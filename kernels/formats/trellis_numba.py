"""Numba CPU code of the bitshift trellis: the Viterbi and greedy searches, stream packing and
reading, each parallel over groups. Same float32 arithmetic, in the same order, as the numpy
reference in `formats/trellis.py`, so paths are identical. The TCQ formats encode with it, the table
training runs it, and the tcq_encode, dequantize and attention kernels build on it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.errors import FormatError
from quantbench.kernels.formats.trellis import ENCODERS, Trellis
from quantbench.kernels.formats.trellis_vectors import viterbi_step

TASKS = 64  # prange tasks per call: each allocates its scratch once and takes every TASKS-th batch


@njit(cache=True)
def _step(xt, table, minima, following, P, K, k):
    """viterbi_step in plain loops (any L and k): following[u] <- the least cost of the states
    u + j*P, cost[s] = minima[s >> k] + (xt - table[s])^2."""
    for j in range(K):
        for u in range(P):
            s = j * P + u
            d = xt - table[s]
            c = minima[s >> k] + d * d
            following[u] = c if (j == 0 or c < following[u]) else following[u]


@njit(cache=True, inline="always")
def _cheapest_predecessor(history, table, x, t, u, P, K, k):
    """The state u + j*P of least cost at value t (the first j on ties), its cost recomputed from
    history[t] with the float32 operations of the forward step, so bit for bit the one it kept.
    Selects rather than branches: which candidate wins is data, not a pattern a predictor learns."""
    s = u
    d = x[t] - table[s]
    low = history[t, s >> k] + d * d
    stride = P >> k if P >= K else 0  # where 2^k divides P, candidate j's overlap is (u >> k) + j * P / 2^k
    for j in range(1, K):
        candidate = u + j * P
        d = x[t] - table[candidate]
        c = history[t, (u >> k) + j * stride if stride else candidate >> k] + d * d
        take = c < low
        s = candidate if take else s
        low = c if take else low
    return s


SEARCH_BATCH = 4  # groups searched together: their tracebacks interleave (see _search)


@njit(cache=True, inline="always")
def _forward(x, table, k, L, overlap, history):
    """Rows 0..T of one group's `history` [T + 1, 2^(L-k)]. overlap < 0: free first state; else
    the state before the first value ends in these L-k bits.

    Row t holds, per overlap u, the least cost of the states u + j*P (P = 2^(L-k)) at value t-1
    (row 0: of the state before the first value). No back pointers are kept: tracking each
    minimum's j doubled the vector work of a step, so the traceback recomputes the 2^k candidate
    costs of the one state it follows at each step and takes the first minimum, as this pass did."""
    P = 1 << (L - k)
    for u in range(P):
        history[0, u] = 0.0 if (overlap < 0 or u == overlap) else np.inf
    for t in range(x.shape[0]):
        if L == 9 and k == 3:  # the shipped formats' trellises: the explicit-SIMD step
            viterbi_step(history, table, x[t], t, 9, 3)
        elif L == 9 and k == 2:
            viterbi_step(history, table, x[t], t, 9, 2)
        else:
            _step(x[t], table, history[t], history[t + 1], P, 1 << k, k)


@njit(cache=True, inline="always")
def _last_state(x, table, k, L, overlap, history):
    """The path's last state from a full `history`: with an overlap, the cheapest state ending in
    it; free, the first state in state order of the least cost (state 0 if every cost is NaN)."""
    T = x.shape[0]
    P, K = 1 << (L - k), 1 << k
    if overlap >= 0:
        return _cheapest_predecessor(history, table, x, T - 1, overlap, P, K, k)
    low = history[T, 0]
    for u in range(1, P):
        low = history[T, u] if history[T, u] < low else low
    s = -1
    for u in range(P):
        if history[T, u] == low:
            candidate = _cheapest_predecessor(history, table, x, T - 1, u, P, K, k)
            s = candidate if (s < 0 or candidate < s) else s
    return max(s, 0)


@njit(cache=True)
def _search(x, table, k, L, overlaps, stop, histories, states, out):
    """Exact minimum-distortion paths of the groups x [B, T], each with its overlap (< 0: free
    first and last state; else both end in these L-k bits), into out [B, T] from value `stop` on
    (the values before it are left as they were). histories [B, T + 1, 2^(L-k)] float32 and
    states [B] are scratch.

    A traceback step is a chain of dependent loads, subtractions and compares, about 60 cycles
    long for a 512-state trellis and a few instructions wide: one group's traceback took a third
    of the search. The B groups' tracebacks step together, so the core runs their chains side by
    side."""
    for b in range(x.shape[0]):
        _forward(x[b], table, k, L, overlaps[b], histories[b])
        states[b] = _last_state(x[b], table, k, L, overlaps[b], histories[b])
    if L == 9 and k == 3:  # constants: the candidate loop unrolls and the indices need no wraparound
        _traceback(x, table, stop, histories, states, out, 64, 8, 3)
    elif L == 9 and k == 2:
        _traceback(x, table, stop, histories, states, out, 128, 4, 2)
    else:
        _traceback(x, table, stop, histories, states, out, 1 << (L - k), 1 << k, k)


@njit(cache=True, inline="always")
def _traceback(x, table, stop, histories, states, out, P, K, k):
    """out[:, stop:] of _search, from each group's last state in `states`."""
    B, T = x.shape
    for t in range(T - 1, stop, -1):
        for b in range(B):
            s = states[b]
            out[b, t] = s
            states[b] = _cheapest_predecessor(histories[b], table, x[b], t - 1, (s >> k) & (P - 1), P, K, k)
    for b in range(B):
        out[b, stop] = states[b]


@njit(cache=True)
def search_scratch(batch, T, k, L):
    """Scratch of viterbi_tailbiting_batch for up to `batch` groups of T values."""
    return (np.empty((batch, T + 1, 1 << (L - k)), np.float32), np.empty((batch, T), np.float32),
            np.empty(batch, np.int64), np.empty(batch, np.int64))


@njit(cache=True)
def viterbi_tailbiting_batch(x, table, k, L, scratch, out):
    """Tail-biting paths of the groups x [B, T] into out [B, T] (B at most the scratch's batch):
    the overlap from a free pass over each group rotated by half (traced back only to the wrap
    point, the one state it needs), then the exact search for that overlap."""
    histories, rotated, states, overlaps = scratch
    B, T = x.shape
    half = T // 2
    for b in range(B):
        for i in range(T):  # a loop: numba's slice assignment costs about a microsecond here
            rotated[b, i] = x[b, (i + half) % T]
        overlaps[b] = -1
    wrap = T - half - 1
    _search(rotated[:B], table, k, L, overlaps, wrap, histories, states, out)
    for b in range(B):
        overlaps[b] = out[b, wrap] & ((1 << (L - k)) - 1)
    _search(x, table, k, L, overlaps, 0, histories, states, out)


@njit(parallel=True, cache=True)
def viterbi_paths(x, table, k, L, overlaps, constrained):
    """Exact paths of groups x [G, T]; constrained: overlaps[g] fixes group g's overlap."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    batches = (G + SEARCH_BATCH - 1) // SEARCH_BATCH
    tasks = min(batches, TASKS)
    for task in prange(tasks):
        histories, _, states, fixed = search_scratch(SEARCH_BATCH, T, k, L)
        for batch in range(task, batches, tasks):
            lo, hi = batch * SEARCH_BATCH, min(G, (batch + 1) * SEARCH_BATCH)
            for b in range(hi - lo):
                fixed[b] = overlaps[lo + b] if constrained else -1
            _search(x[lo:hi], table, k, L, fixed, 0, histories, states, out[lo:hi])
    return out


@njit(parallel=True, cache=True)
def viterbi_tailbiting(x, table, k, L):
    """Tail-biting paths of groups x [G, T] (viterbi_tailbiting_batch, parallel over batches)."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    batches = (G + SEARCH_BATCH - 1) // SEARCH_BATCH
    tasks = min(batches, TASKS)
    for task in prange(tasks):
        scratch = search_scratch(SEARCH_BATCH, T, k, L)
        for batch in range(task, batches, tasks):
            lo, hi = batch * SEARCH_BATCH, min(G, (batch + 1) * SEARCH_BATCH)
            viterbi_tailbiting_batch(x[lo:hi], table, k, L, scratch, out[lo:hi])
    return out


@njit(cache=True)
def greedy_group(x, table, k, L, out):
    """Greedy tail-biting path of one group into `out` (see trellis.encode_greedy)."""
    T = x.shape[0]
    S = 1 << L
    K = 1 << k
    n = k * T
    first_forced = n - (L - k)
    state = 0
    err = np.inf
    for s in range(S):
        d = x[0] - table[s]
        if d * d < err:
            err = d * d
            state = s
    overlap = state >> k
    out[0] = state
    for t in range(1, T):
        mask = 0
        value = 0
        for i in range(k):
            p = k * t + i
            if p >= first_forced:
                mask |= 1 << (k - 1 - i)
                value |= ((overlap >> (n - 1 - p)) & 1) << (k - 1 - i)
        base = (state << k) & (S - 1)
        err = np.inf
        pick = base
        for b in range(K):
            if (b & mask) != value:
                continue
            d = x[t] - table[base | b]
            if d * d < err:
                err = d * d
                pick = base | b
        state = pick
        out[t] = state


@njit(parallel=True, cache=True)
def greedy_tailbiting(x, table, k, L):
    """Greedy tail-biting paths of groups x [G, T], parallel over groups."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    for g in prange(G):
        greedy_group(x[g], table, k, L, out[g])
    return out


@njit(cache=True, inline="always")
def pack_group(states, k, out):
    """One group's states [T] -> its stream `out` [T*k/8] uint8, each state's low k bits MSB-first
    (T*k is whole bytes: Trellis.check_length)."""
    bits = 0
    held = 0
    byte = 0
    for t in range(states.shape[0]):
        bits = ((bits << k) | (states[t] & ((1 << k) - 1))) & 0xFFFF
        held += k
        if held >= 8:
            held -= 8
            out[byte] = np.uint8((bits >> held) & 0xFF)
            byte += 1


@njit(parallel=True, cache=True)
def pack_stream(states, k):
    """[G, T] states -> [G, T*k/8] uint8, MSB-first (trellis.pack_stream)."""
    G, T = states.shape
    out = np.empty((G, T * k // 8), np.uint8)
    for g in prange(G):
        pack_group(states[g], k, out[g])
    return out


@njit(cache=True, inline="always")
def symbol_at(codes, p, k):
    """k bits of a row of codes starting at bit p (MSB-first); may straddle two bytes."""
    byte = p >> 3
    word = np.int64(codes[byte]) << 8
    if byte + 1 < codes.shape[0]:
        word |= codes[byte + 1]
    return (word >> (16 - (p & 7) - k)) & ((1 << k) - 1)


@njit(cache=True, inline="always")
def group_levels(codes, levels, k, L, T, lane, y):
    """Levels of one group's values into column `lane` of y [T, lanes]: a shift register started
    from the stream's last L bits (the tail-biting wrap)."""
    mask = (1 << L) - 1
    state = 0
    for t in range(T - (L + k - 1) // k, T):  # enough trailing symbols to fill the register
        state = ((state << k) | symbol_at(codes, k * t, k)) & mask
    for t in range(T):
        state = ((state << k) | symbol_at(codes, k * t, k)) & mask
        y[t, lane] = levels[state]


def encode_paths(x: np.ndarray, table: np.ndarray, trellis: Trellis, encoder: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    trellis.check_length(x.shape[1])
    if encoder == "viterbi":
        return viterbi_tailbiting(x, table, trellis.k, trellis.L)
    if encoder == "greedy":
        return greedy_tailbiting(x, table, trellis.k, trellis.L)
    raise FormatError(f"trellis: unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
