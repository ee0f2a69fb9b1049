"""Numba CPU attention straight from the packed KV cache: `native` (flash-decoding) and `sparse_v`.

Both read each stored row once per call, decode it into a small buffer (kernels/attention/numba_rows.py)
and never materialize the dequantized cache. Queries arrive in the codes' domain
(kernels/attention/layout.NativePlan.query: scaled, rotated, turbo4-extended) as [R, Q, W] with
R = batch * kv_heads and Q = group * n: the query heads sharing a KV head read its rows together.

native: the context is cut into splits and the rows into groups of up to ROW_GROUP; prange runs
over (row group, split), and each task reads every row of its group at its positions: the rows
(KV heads) of a position lie together in the cache. A task walks its split in tiles of TILE
positions: the tile's key rows decoded into a [row, position, W] buffer (one decoder call per row
and tile) and scored by up to 3 of the queries sharing the row at once, 8 positions at a time
(kernels/common/numba_row_math.py: each loaded chunk of a row serves every query), one online-softmax
rescale per row, query and tile (the tile's max and exponentials in vector IR:
numba_row_math.lanes_max, kernels/common/numba_exp.py), then the tile's value rows decoded into the
same buffer and added, weighted, into an accumulator per row and query, 16 positions and up to 3
queries at a time. The partial (max, sum, accumulator) triples are merged exactly afterwards
(flash-decoding: out = sum_s e^(m_s-M) acc_s / sum_s e^(m_s-M) l_s). The TCQ formats run the same
kernels through kernels/attention/tcq_numba.TcqPlan.

sparse_v: two passes. Scores of every position go to a [R, Q, ctx] buffer with each split's max and
exp-sum; merged, they give every query's exact softmax normalizer. The value pass then computes
the final weights and skips a row (no read, no decode) when its weight is below the threshold for
all Q queries; kept rows accumulate with their final weights (skipped mass is not redistributed).
Both passes go a tile at a time as native does: keys decoded per tile and scored by tile_dots, the
weights by the vector exponential, the kept value rows decoded in runs and added by tile_axpy. At
32K (9 heads, 3 KV heads, dim 64, 2 threads on the AVX-512 Xeon, random data: nothing skipped) a
call took turbo3 5.1 -> 1.8 ms and q8_0 3.8 -> 1.6 ms against the one-row-per-call loops with
scalar exponentials (native: 1.1 and 1.0 ms).

FASTMATH lets LLVM reassociate the dot products and sums (any order is covered by the op's
tolerance) but keeps infinities, which mark masked positions.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.attention.layout import (
    KIND_TCQ,
    KIND_TURBO,
    is_native,
    native_plan,
    qjl_coefficient,
)
from quantbench.kernels.attention.numba_rows import decode_rows, padded_levels
from quantbench.kernels.attention.spec import attn_shape, causal_limits
from quantbench.kernels.attention.torch import ATTN_OPS, SPARSE_V_THRESHOLD, SparseVRun
from quantbench.kernels.common.numba_exp import exp_shifted
from quantbench.kernels.common.numba_row_math import (
    DOT_ROWS,
    MAX_QUERIES,
    aligned_zeros,
    lanes_max,
    tile_axpy_n,
    tile_dots_n,
)
from quantbench.kernels.common.numba_row_math import ROWS as AXPY_ROWS
from quantbench.kernels.registry import variant

TILE = 32
MIN_TASK_ROWS = 256  # rows (position, KV head) per task at least: below this the merge and scratch cost dominate
ROW_GROUP = 8  # rows (KV heads) a task reads at each of its positions: adjacent in the cache, they share lines
TASKS_PER_THREAD = 4
FASTMATH = {"reassoc", "contract", "arcp"}  # not nnan/ninf: masked scores and empty maxima are -inf


@njit(cache=True)
def row_groups(rows):
    """Row groups of up to ROW_GROUP rows (the kernels' prange loops and the drivers alike)."""
    return -(-rows // ROW_GROUP)


@functools.cache
def flash_partials(kind: int, bits: int):
    """The native kernel for one format kind and bit width (kernels/attention/numba_rows.decode_rows),
    so that a run compiles only the formats it reads, and each only its own decoder: about 5 s each
    for q8_0, q4_0 and turbo3 (q8_0 took 8.4 s when all six decoders were inlined and pruned by literal kind,
    and one entry switching over the six at run time compiled them all, 80 s, for any one). numba
    keys the cached code by the closure's values, ints here."""

    @njit(parallel=True, cache=True)
    def partials(qx, limits, n, kc, ke, ks1, ks2, vc, ve, vs1, vs2, dim, cg, levels, qjl_coef, split, m_out, l_out,
                 acc_out):
        splits = m_out.shape[1]
        for t in prange(row_groups(qx.shape[0]) * splits):
            _flash_task(kind, bits, t // splits, t % splits, qx, limits, n, kc, ke, ks1, ks2, vc, ve, vs1, vs2, dim,
                        cg, levels, qjl_coef, split, m_out, l_out, acc_out)

    return partials


# The task is plain @njit code called from the prange loop rather than the loop's body (the body of
# a prange loop is compiled apart, over its captured arrays), around one format's decoder.
# turbo3 at depth 1024 (3 KV heads, 3 queries each), one thread: 452 us a call in the loop's body
# with a table lookup per code and the kind tested at run time; 283 us so.
# A task reads the rows (KV heads) of a row group at each of its positions: the rows of a position
# are adjacent in the cache and share cache lines. With a task per (row, split), at 32K context with
# 3 KV heads (13 MB of q8_0 codes, past the last-level cache) every line was read once per row:
# 13.4 ms a call (median, one thread) on a 2-core EPYC with 7 GB/s of copy bandwidth, 5.3 ms with
# the three rows in one task. Groups of ROW_GROUP bound the task's accumulators at many rows (batch).
# Tiles of decoded rows and 16-row dot products and updates (tile_dots, tile_axpy) in place of a
# dot product and an update per row, with the exponentials and the tile's max in vector IR: q8_0 at
# 32K, 2 threads on a 2-core Xeon with AVX-512, 2.57 -> 1.23 ms a call; turbo3 3.05 -> 1.91 ms
# (results/97db846de0e9.jsonl; torch's f32 SDPA 2.5-2.7 ms). Then, on the same Xeon: the 3 queries
# of a KV head scored and added together (a load per FMA had bounded the dots and updates: 1.3
# loads a cycle there), one decoder call per row and tile, and turbo's codes by GF2P8AFFINEQB:
# q8_0 1.05-1.27 -> 0.84-0.88 ms, q4_0 1.10-1.33 -> 0.75-0.85, turbo3 1.60 -> 0.90.
@njit(fastmath=FASTMATH, cache=True)
def _flash_task(kind, bits, g, sp, qx, limits, n, kc, ke, ks1, ks2, vc, ve, vs1, vs2, dim, cg, levels, qjl_coef,
                split, m_out, l_out, acc_out):
    R, Q, W = qx.shape
    r0 = g * ROW_GROUP
    rows = min(R, r0 + ROW_GROUP) - r0
    seen = np.empty(Q, np.int64)
    for qi in range(Q):
        seen[qi] = limits[qi % n]
    lo = sp * split
    hi = min(kc.shape[0], lo + split, seen.max())  # no query sees a position past its limit
    tile = aligned_zeros(rows * TILE * W)  # the tile's decoded rows, [row, position, W]: keys, then values
    scores = aligned_zeros(rows * Q * TILE)  # [row, query, position]: scores, then their exponentials
    m = np.full((rows, Q), -np.inf, np.float32)
    l = np.zeros((rows, Q), np.float32)
    acc = aligned_zeros(rows * Q * W)
    for t0 in range(lo, hi, TILE):
        count = min(hi, t0 + TILE) - t0
        _score_tile(kind, bits, qx, seen, r0, rows, kc, ke, ks1, ks2, t0, count, dim, cg, levels, qjl_coef, tile,
                    scores)
        for r in range(rows):
            for qi in range(Q):
                at = (r * Q + qi) * TILE
                top = lanes_max(scores, at, TILE, m[r, qi])
                if top == -np.inf:
                    scores[at:at + TILE] = 0.0
                    continue
                if top > m[r, qi]:
                    alpha = np.float32(math.exp(m[r, qi] - top))
                    l[r, qi] *= alpha
                    for i in range((r * Q + qi) * W, (r * Q + qi + 1) * W):
                        acc[i] *= alpha
                    m[r, qi] = top
                l[r, qi] += exp_shifted(scores, at, TILE, top, scores)
        _decode_tile(kind, bits, vc, ve, vs1, vs2, t0, count, r0, rows, dim, cg, levels, qjl_coef, tile, W)
        for r in range(rows):  # a query that has seen no position yet has zero weights here
            for q0 in range(0, Q, MAX_QUERIES):
                for part in range(0, TILE, AXPY_ROWS):
                    tile_axpy_n(acc, (r * Q + q0) * W, W, min(MAX_QUERIES, Q - q0), scores,
                                (r * Q + q0) * TILE + part, TILE, tile, (r * TILE + part) * W, W)
    for r in range(rows):
        for qi in range(Q):
            m_out[r0 + r, sp, qi] = m[r, qi]
            l_out[r0 + r, sp, qi] = l[r, qi]
            for i in range(W):
                acc_out[r0 + r, sp, qi, i] = acc[(r * Q + qi) * W + i]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _score_tile(kind, bits, qx, seen, r0, rows, kc, ke, ks1, ks2, t0, count, dim, cg, levels, qjl_coef, tile, scores):
    """Positions t0 .. t0+count-1 of rows r0 .. r0+rows-1: the key rows decoded into the tile and scored
    by every query into scores [row, query, TILE]; -inf where query qi does not see the position
    (seen[qi] and past) or past the tile's count."""
    R, Q, W = qx.shape
    if count < TILE:  # the last tile: the rows past its end weigh 0 and must hold finite values
        tile[:] = 0.0
    _decode_tile(kind, bits, kc, ke, ks1, ks2, t0, count, r0, rows, dim, cg, levels, qjl_coef, tile, W)
    for r in range(rows):
        for q0 in range(0, Q, MAX_QUERIES):
            for part in range(0, TILE, DOT_ROWS):
                tile_dots_n(qx, ((r0 + r) * Q + q0) * W, W, min(MAX_QUERIES, Q - q0), tile,
                            (r * TILE + part) * W, W, scores, (r * Q + q0) * TILE + part, TILE)
        for qi in range(Q):
            at = (r * Q + qi) * TILE
            for t in range(max(0, min(count, seen[qi] - t0)), TILE):
                scores[at + t] = -np.inf


@njit(cache=True)
def _decode_tile(kind, bits, codes, extra, s1, s2, t0, count, r0, rows, dim, cg, levels, qjl_coef, tile, W):
    """Positions t0 .. t0+count-1 of rows r0 .. r0+rows-1 into the flat [row, TILE, W] tile buffer."""
    for r in range(rows):
        decode_rows(kind, bits, codes, extra, s1, s2, t0, count, r0 + r, dim, cg, levels, qjl_coef, tile,
                    r * TILE * W, W)


@njit(parallel=True, cache=True)
def merge_partials(m_out, l_out, acc_out, out):
    R, splits, Q, W = acc_out.shape
    for rq in prange(R * Q):
        r = rq // Q
        qi = rq % Q
        top = -np.inf
        for sp in range(splits):
            top = max(top, m_out[r, sp, qi])
        total = 0.0
        for i in range(W):
            out[r, qi, i] = 0.0
        for sp in range(splits):
            if m_out[r, sp, qi] == -np.inf:
                continue
            w = math.exp(m_out[r, sp, qi] - top)
            total += w * l_out[r, sp, qi]
            for i in range(W):
                out[r, qi, i] += w * acc_out[r, sp, qi, i]
        for i in range(W):
            out[r, qi, i] /= total


@functools.cache
def sparse_passes(kind: int, bits: int):
    """(scores pass, values pass) of sparse_v for one format kind and bit width, as flash_partials;
    each task covers the rows of one row group over its split of positions, as _flash_task."""

    @njit(parallel=True, cache=True)
    def scores_pass(qx, limits, n, kc, ke, ks1, ks2, dim, cg, levels, qjl_coef, split, scores, m_out, l_out):
        splits = m_out.shape[1]
        for t in prange(row_groups(qx.shape[0]) * splits):
            _scores_task(kind, bits, t // splits, t % splits, qx, limits, n, kc, ke, ks1, ks2, dim, cg, levels,
                         qjl_coef, split, scores, m_out, l_out)

    @njit(parallel=True, cache=True)
    def values_pass(vc, ve, vs1, vs2, dim, cg, levels, qjl_coef, split, threshold, scores, top, norm, acc_out,
                    skipped):
        R, splits = acc_out.shape[:2]
        for t in prange(row_groups(R) * splits):
            skipped[t] = _values_task(kind, bits, t // splits, t % splits, vc, ve, vs1, vs2, dim, cg, levels,
                                      qjl_coef, split, threshold, scores, top, norm, acc_out)

    return scores_pass, values_pass


@njit(fastmath=FASTMATH, cache=True)
def _scores_task(kind, bits, g, sp, qx, limits, n, kc, ke, ks1, ks2, dim, cg, levels, qjl_coef, split, scores,
                 m_out, l_out):
    """Scores of split sp of row group g for every query into scores [R, Q, ctx], with the split's
    max and exp-sum; the key rows decoded and scored a tile at a time, as in _flash_task."""
    R, Q, W = qx.shape
    r0 = g * ROW_GROUP
    rows = min(R, r0 + ROW_GROUP) - r0
    lo = sp * split
    hi = min(kc.shape[0], lo + split)
    tile = aligned_zeros(rows * TILE * W)
    part_scores = aligned_zeros(rows * Q * TILE)  # [row, query, position]: the tile's scores, then exponentials
    m = np.full((rows, Q), -np.inf, np.float32)
    l = np.zeros((rows, Q), np.float32)
    seen = np.empty(Q, np.int64)
    for qi in range(Q):
        seen[qi] = limits[qi % n]
    for t0 in range(lo, hi, TILE):
        count = min(hi, t0 + TILE) - t0
        _score_tile(kind, bits, qx, seen, r0, rows, kc, ke, ks1, ks2, t0, count, dim, cg, levels, qjl_coef, tile,
                    part_scores)
        for r in range(rows):
            for qi in range(Q):
                at = (r * Q + qi) * TILE
                for t in range(count):
                    scores[r0 + r, qi, t0 + t] = part_scores[at + t]
                top = lanes_max(part_scores, at, TILE, m[r, qi])
                if top == -np.inf:
                    continue
                if top > m[r, qi]:
                    l[r, qi] *= np.float32(math.exp(m[r, qi] - top))
                    m[r, qi] = top
                l[r, qi] += exp_shifted(part_scores, at, TILE, top, part_scores)
    for r in range(rows):
        for qi in range(Q):
            m_out[r0 + r, sp, qi] = m[r, qi]
            l_out[r0 + r, sp, qi] = l[r, qi]


@njit(fastmath=FASTMATH, cache=True)
def _values_task(kind, bits, g, sp, vc, ve, vs1, vs2, dim, cg, levels, qjl_coef, split, threshold, scores, top, norm,
                 acc_out):
    """Split sp of row group g's value rows weighted into acc_out, skipping those below the threshold
    for every query; the count skipped. A tile at a time: the weights by the vector exponential, the
    kept rows decoded in runs (a skipped row is neither read nor decoded: its slot is zeroed), and
    added as in _flash_task."""
    R, _, Q, W = acc_out.shape
    r0 = g * ROW_GROUP
    rows = min(R, r0 + ROW_GROUP) - r0
    lo = sp * split
    hi = min(vc.shape[0], lo + split)
    tile = aligned_zeros(rows * TILE * W)
    weights = aligned_zeros(rows * Q * TILE)  # [row, query, position]
    acc = aligned_zeros(rows * Q * W)
    skipped = 0
    for t0 in range(lo, hi, TILE):
        count = min(hi, t0 + TILE) - t0
        for r in range(rows):
            for qi in range(Q):
                at = (r * Q + qi) * TILE
                for t in range(TILE):
                    weights[at + t] = scores[r0 + r, qi, t0 + t] if t < count else -np.inf
                exp_shifted(weights, at, TILE, top[r0 + r, qi], weights)
                for t in range(TILE):
                    weights[at + t] /= norm[r0 + r, qi]
            start = 0  # the first position of the current run of kept rows
            for t in range(TILE + 1):
                kept = False
                if t < count:
                    for qi in range(Q):
                        kept |= weights[(r * Q + qi) * TILE + t] >= threshold
                if kept:
                    continue
                if t > start:
                    decode_rows(kind, bits, vc, ve, vs1, vs2, t0 + start, t - start, r0 + r, dim, cg, levels,
                                qjl_coef, tile, (r * TILE + start) * W, W)
                if t < TILE:  # a skipped row, or a slot past the last position
                    if t < count:
                        skipped += 1
                    for qi in range(Q):
                        weights[(r * Q + qi) * TILE + t] = 0.0
                    for i in range((r * TILE + t) * W, (r * TILE + t + 1) * W):
                        tile[i] = 0.0
                start = t + 1
            for q0 in range(0, Q, MAX_QUERIES):
                for part in range(0, TILE, AXPY_ROWS):
                    tile_axpy_n(acc, (r * Q + q0) * W, W, min(MAX_QUERIES, Q - q0), weights,
                                (r * Q + q0) * TILE + part, TILE, tile, (r * TILE + part) * W, W)
    for r in range(rows):
        for qi in range(Q):
            for i in range(W):
                acc_out[r0 + r, sp, qi, i] = acc[(r * Q + qi) * W + i]
    return skipped


# ---- drivers -----------------------------------------------------------------------------------
def split_size(ctx: int, rows: int) -> int:
    """Positions per task (a task reads the rows of one row group at its positions): enough tasks to
    keep every thread busy, none with fewer than MIN_TASK_ROWS rows."""
    tasks = TASKS_PER_THREAD * numba.get_num_threads()
    splits_wanted = -(-tasks // row_groups(rows))
    split = max(-(-MIN_TASK_ROWS // min(rows, ROW_GROUP)), -(-ctx // splits_wanted))
    return min(ctx, -(-split // TILE) * TILE)


class NativeCache:
    """A packed K/V pair (one format) made ready for the kernels: plan, row views, and `limits`:
    query token i sees positions 0 .. limits[i]-1. Build it once per cache and query shape;
    `prefix` views its first positions for another query shape at no copy (the model's cache)."""

    def __init__(self, fmt, pk, pv, limits, plan=None):
        """plan: how the kernels read the format (default layout.native_plan; tcq_numba.TcqPlan)."""
        if tuple(pv.shape) != tuple(pk.shape):
            raise ValueError(f"native attention: K {tuple(pk.shape)} and V {tuple(pv.shape)} differ in shape")
        plan = plan or native_plan(fmt, pk.shape[-1])
        self._setup(plan, plan.rows(pk), plan.rows(pv), tuple(pk.shape), limits)

    def prefix(self, length: int, limits) -> NativeCache:
        """Positions 0..length-1 read by queries with these limits (views of the same rows)."""
        view = object.__new__(type(self))
        view._setup(self.plan, tuple(a[:length] for a in self.k), tuple(a[:length] for a in self.v),
                    (length, *self.shape[1:]), limits)
        return view

    def _setup(self, plan, k_rows, v_rows, shape, limits):
        ctx, batch, kv_heads, dim = shape
        self.plan, self.k, self.v, self.shape = plan, k_rows, v_rows, shape
        self.limits = np.asarray(limits, dtype=np.int64)
        self.n = len(self.limits)
        if self.n == 0 or self.limits.min() < 1 or self.limits.max() > ctx:
            raise ValueError(f"native attention: query limits {self.limits.tolist()} outside 1..{ctx}")
        self.split = split_size(ctx, batch * kv_heads)
        self.splits = -(-ctx // self.split)
        p = plan
        qjl = qjl_coefficient(p)
        self.consts = (p.dim, p.code_group or 32, padded_levels(p.codebook, qjl), qjl)
        self.format_key = (p.kind, p.bits if p.kind in (KIND_TURBO, KIND_TCQ) else 0)  # what the kernels specialize on

    def queries(self, q: torch.Tensor) -> np.ndarray:
        b, h, n, _ = q.shape
        _, batch, kv_heads, _ = self.shape
        if (b, n) != (batch, self.n) or h % kv_heads:
            raise ValueError(f"native attention: query {tuple(q.shape)} does not fit a cache of batch {batch}, "
                             f"{kv_heads} KV heads and {self.n} query tokens")
        qx = self.plan.query(q)
        return qx.reshape(b * kv_heads, h // kv_heads * n, qx.shape[-1]).numpy()

    def finish(self, out: np.ndarray, q_shape) -> torch.Tensor:
        b, h, n, _ = q_shape
        return self.plan.output(torch.from_numpy(out).reshape(b, h, n, out.shape[-1]))

    def native(self, q: torch.Tensor) -> torch.Tensor:
        qx = self.queries(q)
        R, Q, W = qx.shape
        m = np.empty((R, self.splits, Q), np.float32)
        l = np.empty((R, self.splits, Q), np.float32)
        acc = np.empty((R, self.splits, Q, W), np.float32)
        flash_partials(*self.format_key)(qx, self.limits, self.n, *self.k, *self.v, *self.consts, self.split, m, l,
                                         acc)
        out = np.empty((R, Q, W), np.float32)
        merge_partials(m, l, acc, out)
        return self.finish(out, q.shape)

    def sparse_v(self, q: torch.Tensor, threshold: float) -> tuple[torch.Tensor, float]:
        qx = self.queries(q)
        R, Q, W = qx.shape
        ctx = self.shape[0]
        scores = np.empty((R, Q, ctx), np.float32)
        m = np.empty((R, self.splits, Q), np.float32)
        l = np.empty((R, self.splits, Q), np.float32)
        scores_pass, values_pass = sparse_passes(*self.format_key)
        scores_pass(qx, self.limits, self.n, *self.k, *self.consts, self.split, scores, m, l)
        top = m.max(axis=1)
        norm = (l * np.exp(np.where(np.isfinite(m), m - top[:, None, :], -np.inf))).sum(axis=1)
        acc = np.empty((R, self.splits, Q, W), np.float32)
        skipped = np.zeros(row_groups(R) * self.splits, np.int64)
        values_pass(*self.v, *self.consts, self.split, np.float32(threshold), scores, top, norm.astype(np.float32),
                    acc, skipped)
        out = self.finish(acc.sum(axis=1), q.shape)
        return out, float(skipped.sum()) / (R * ctx)


def _native_cache(case) -> tuple[NativeCache, torch.Tensor]:
    s = attn_shape(case)
    x = case.inputs()
    fmt = case.format_obj
    return NativeCache(fmt, fmt.encode(x["k"]), fmt.encode(x["v"]), causal_limits(s.n, s.ctx)), x["q"]


for _op in ATTN_OPS:
    @variant(_op, backend="numba", name="native", formats=is_native, needs=("numba",))
    def _native(case):
        """flash-decoding over the packed codes: context splits in parallel, exact softmax merge"""
        cache, q = _native_cache(case)
        return lambda: cache.native(q)

    @variant(_op, backend="numba", name="sparse_v", formats=is_native, needs=("numba",))
    def _sparse_v(case):
        """exact softmax normalizer first, then only the value rows some query weights above the threshold"""
        cache, q = _native_cache(case)
        return SparseVRun(lambda t: cache.sparse_v(q, t), SPARSE_V_THRESHOLD)
