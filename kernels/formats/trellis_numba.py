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


@njit(cache=True, inline="always")
def _step(xt, table_pk, cost_kp, cost_pk, best, back, P, K):
    """One Viterbi step: for each overlap u, the cheapest of its K predecessors u + j*P (first on
    ties) into best[u] / back[u]; then the cost of each state u*K + b. The cost array comes as two
    views, [K, P] (state j*P + u) and [P, K] (state u*K + b), so that each innermost loop indexes by
    its own variable: cost[j*P + u] needs numba's negative-index check, which LLVM turns into a
    gather. The selects rather than an `if` keep the stores unconditional. The states' loop runs to
    the row's run-time length: with the literal K it is unrolled into scalar code (a level load may
    alias a cost store, so the 8 are not combined), with a run-time count it is vectorized. One pass
    of 64 values at L = 9, k = 3: 22 us as flat indices, 16 us through the views, 10 us so."""
    first = cost_kp[0]
    for u in range(P):
        best[u] = first[u]
        back[u] = 0
    for j in range(1, K):
        row = cost_kp[j]
        for u in range(P):
            c = row[u]
            take = c < best[u]
            best[u] = c if take else best[u]
            back[u] = np.uint8(j) if take else back[u]
    for u in range(P):
        bu = best[u]
        levels = table_pk[u]
        states = cost_pk[u]
        for b in range(levels.shape[0]):
            d = xt - levels[b]
            states[b] = bu + d * d


@njit(cache=True)
def _viterbi(x, table, k, L, overlap, back, cost, best, out):
    """Exact minimum-distortion path of one group into `out`. overlap < 0: free first and last
    state; else both end in these L-k bits. `back`, `cost`, `best` are scratch."""
    T = x.shape[0]
    S = 1 << L
    P = 1 << (L - k)
    K = 1 << k
    for s in range(S):
        cost[s] = 0.0 if (overlap < 0 or s == overlap) else np.inf
    cost_kp, cost_pk, table_pk = cost.reshape((K, P)), cost.reshape((P, K)), table.reshape((P, K))
    for t in range(T):
        if L == 9 and k == 3:  # the shipped formats' trellises: the explicit-SIMD step
            viterbi_step(cost, table, x[t], back, t, 9, 3)
        elif L == 9 and k == 2:
            viterbi_step(cost, table, x[t], back, t, 9, 2)
        # a literal branch count lets LLVM unroll and vectorize the inner loops (2x at L = 9)
        elif k == 2:
            _step(x[t], table_pk, cost_kp, cost_pk, best, back[t], P, 4)
        elif k == 3:
            _step(x[t], table_pk, cost_kp, cost_pk, best, back[t], P, 8)
        else:
            _step(x[t], table_pk, cost_kp, cost_pk, best, back[t], P, K)
    last = -1
    for s in range(S):
        if overlap >= 0 and (s & (P - 1)) != overlap:
            continue
        if last < 0 or cost[s] < cost[last]:
            last = s
    s = last
    for t in range(T - 1, -1, -1):
        out[t] = s
        u = s >> k
        s = u | (np.int64(back[t, u]) << (L - k))


@njit(parallel=True, cache=True)
def viterbi_paths(x, table, k, L, overlaps, constrained):
    """Exact paths of groups x [G, T]; constrained: overlaps[g] fixes group g's overlap."""
    G, T = x.shape
    out = np.empty((G, T), np.int32)
    tasks = min(G, TASKS)
    for task in prange(tasks):
        back = np.empty((T, 1 << (L - k)), np.uint8)
        cost = np.empty(1 << L, np.float32)
        best = np.empty(1 << (L - k), np.float32)
        for g in range(task, G, tasks):
            _viterbi(x[g], table, k, L, overlaps[g] if constrained else -1, back, cost, best, out[g])
    return out


@njit(parallel=True, cache=True)
def viterbi_tailbiting(x, table, k, L):
    """Tail-biting paths: overlap from the half-rotated free pass, then the exact search for it."""
    G, T = x.shape
    half = T // 2
    out = np.empty((G, T), np.int32)
    tasks = min(G, TASKS)
    for task in prange(tasks):
        back = np.empty((T, 1 << (L - k)), np.uint8)
        cost = np.empty(1 << L, np.float32)
        best = np.empty(1 << (L - k), np.float32)
        rotated = np.empty(T, np.float32)
        for g in range(task, G, tasks):
            rotated[: T - half] = x[g, half:]
            rotated[T - half:] = x[g, :half]
            _viterbi(rotated, table, k, L, -1, back, cost, best, out[g])
            overlap = out[g, T - half - 1] & ((1 << (L - k)) - 1)
            _viterbi(x[g], table, k, L, overlap, back, cost, best, out[g])
    return out


@njit(parallel=True, cache=True)
def greedy_tailbiting(x, table, k, L):
    """Greedy tail-biting paths (see trellis.encode_greedy)."""
    G, T = x.shape
    S = 1 << L
    K = 1 << k
    n = k * T
    first_forced = n - (L - k)
    out = np.empty((G, T), np.int32)
    for g in prange(G):
        state = 0
        err = np.inf
        for s in range(S):
            d = x[g, 0] - table[s]
            if d * d < err:
                err = d * d
                state = s
        overlap = state >> k
        out[g, 0] = state
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
                d = x[g, t] - table[base | b]
                if d * d < err:
                    err = d * d
                    pick = base | b
            state = pick
            out[g, t] = state
    return out


@njit(parallel=True, cache=True)
def pack_stream(states, k):
    """[G, T] states -> [G, T*k/8] uint8, MSB-first (trellis.pack_stream)."""
    G, T = states.shape
    out = np.zeros((G, T * k // 8), np.uint8)
    for g in prange(G):
        for t in range(T):
            sym = states[g, t]
            for i in range(k):
                if (sym >> (k - 1 - i)) & 1:
                    p = k * t + i
                    out[g, p >> 3] |= np.uint8(1 << (7 - (p & 7)))
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
