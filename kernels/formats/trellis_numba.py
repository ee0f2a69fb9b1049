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

TASKS = 64  # prange tasks per call: each allocates its scratch once and takes every TASKS-th group


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
    for j in range(1, K):
        candidate = u + j * P
        d = x[t] - table[candidate]
        c = history[t, candidate >> k] + d * d
        take = c < low
        s = candidate if take else s
        low = c if take else low
    return s


@njit(cache=True)
def _viterbi(x, table, k, L, overlap, history, out):
    """Exact minimum-distortion path of one group into `out`. overlap < 0: free first and last
    state; else both end in these L-k bits. `history` [T + 1, 2^(L-k)] float32 is scratch.

    Row t of history holds, per overlap u, the least cost of the states u + j*P (P = 2^(L-k))
    at value t-1 (row 0: of the state before the first value, free or any ending in the
    overlap). The forward pass keeps no back pointers: tracking each minimum's j doubled the
    vector work of a step, so the traceback recomputes the 2^k candidate costs of the one state
    it follows at each step and takes the first minimum, as the forward pass did."""
    T = x.shape[0]
    P = 1 << (L - k)
    K = 1 << k
    for u in range(P):
        history[0, u] = 0.0 if (overlap < 0 or u == overlap) else np.inf
    for t in range(T):
        if L == 9 and k == 3:  # the shipped formats' trellises: the explicit-SIMD step
            viterbi_step(history, table, x[t], t, 9, 3)
        elif L == 9 and k == 2:
            viterbi_step(history, table, x[t], t, 9, 2)
        else:
            _step(x[t], table, history[t], history[t + 1], P, K, k)
    if overlap >= 0:  # the last state ends in the overlap: one of overlap + j*P
        s = _cheapest_predecessor(history, table, x, T - 1, overlap, P, K, k)
    else:  # the first state, in state order, of the least cost (state 0 if every cost is NaN)
        low = history[T, 0]
        for u in range(1, P):
            low = history[T, u] if history[T, u] < low else low
        s = -1
        for u in range(P):
            if history[T, u] == low:
                candidate = _cheapest_predecessor(history, table, x, T - 1, u, P, K, k)
                s = candidate if (s < 0 or candidate < s) else s
        s = max(s, 0)
    for t in range(T - 1, 0, -1):
        out[t] = s
        s = _cheapest_predecessor(history, table, x, t - 1, s >> k, P, K, k)
    out[0] = s


@njit(parallel=True, cache=True)
def viterbi_paths(x, table, k, L, overlaps, constrained):
    """Exact paths of groups x [G, T]; constrained: overlaps[g] fixes group g's overlap."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    tasks = min(G, TASKS)
    for task in prange(tasks):
        history = np.empty((T + 1, 1 << (L - k)), np.float32)
        for g in range(task, G, tasks):
            _viterbi(x[g], table, k, L, overlaps[g] if constrained else -1, history, out[g])
    return out


@njit(cache=True)
def viterbi_tailbiting_group(x, table, k, L, history, rotated, out):
    """Tail-biting path of one group into `out`: overlap from the half-rotated free pass, then the
    exact search for it. `history` [T + 1, 2^(L-k)] float32 and `rotated` [T]: scratch."""
    T = x.shape[0]
    half = T // 2
    for i in range(T):  # a loop: numba's slice assignment costs about a microsecond here
        rotated[i] = x[(i + half) % T]
    _viterbi(rotated, table, k, L, -1, history, out)
    overlap = out[T - half - 1] & ((1 << (L - k)) - 1)
    _viterbi(x, table, k, L, overlap, history, out)


@njit(parallel=True, cache=True)
def viterbi_tailbiting(x, table, k, L):
    """Tail-biting paths of groups x [G, T] (viterbi_tailbiting_group, parallel over groups)."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    tasks = min(G, TASKS)
    for task in prange(tasks):
        history = np.empty((T + 1, 1 << (L - k)), np.float32)
        rotated = np.empty(T, np.float32)
        for g in range(task, G, tasks):
            viterbi_tailbiting_group(x[g], table, k, L, history, rotated, out[g])
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
    """One group's states [T] -> its stream `out` [T*k/8] uint8, each state's low k bits MSB-first."""
    out[:] = 0
    for t in range(states.shape[0]):
        sym = states[t]
        for i in range(k):
            if (sym >> (k - 1 - i)) & 1:
                p = k * t + i
                out[p >> 3] |= np.uint8(1 << (7 - (p & 7)))


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
