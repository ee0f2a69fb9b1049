"""Native attention decode for the trellis formats turbo2_tcq / turbo3_tcq (issue 6).

A TCQ value decodes from the L-bit window of its group's bit stream that ends with its own k bits
and one table lookup, in the rotated domain; so, as for turbo (attn_split), the query is rotated
once per head, each key's rotated levels are decoded into a scratch row and scored, each value's
rotated levels are accumulated under an online softmax, and the sum is rotated back once.

  native_reference   torch float64 attention in the rotated domain (the math, checked against
                     attention over the dequantized cache)
  numba/native       CPU kernel: parallel over (batch, kv head, split of the context), keys
                     decoded TILE at a time by a shift register over the stream, exact
                     merge of the splits
The numba-cuda placement variants (const / shared / registers) are in attention/cuda.py.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.attention import split as attn_split
from quantbench.kernels.attention.spec import causal_limits
from quantbench.kernels.common.numba_f16 import f16_bits_to_f32
from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.formats.trellis_numba import symbol_at
from quantbench.kernels.formats.turbo_tcq import _levels_tensor, stream_states_torch
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import is_tcq

SPLITS_PER_THREAD = 4  # prange tasks per numba thread: balances the uneven causal tails
TILE = 32  # keys decoded per step of a split


def native_reference(q: torch.Tensor, k_packed, v_packed, fmt, kv_heads: int) -> torch.Tensor:
    """float64 causal GQA attention computed in the rotated domain of a TCQ cache: [B, H, n, D]."""
    B, H, n, D = q.shape
    g = fmt.group_for(D)
    ctx = k_packed.shape[0]

    def rotated(packed):
        codes = packed["codes"].reshape(-1, g * fmt.bits // 8)
        states = stream_states_torch(codes, fmt.trellis, g)
        levels = _levels_tensor(fmt.trellis, fmt.code, g, str(codes.device))[states].double()
        values = levels * packed["norms"].reshape(-1, 1).double()
        return values.reshape(ctx, B, kv_heads, D).permute(1, 2, 0, 3)  # [B, KVH, ctx, D]

    rows = attn_split.query_rows(q, kv_heads, fmt, torch.float64)
    scores = rows.reshape(B, kv_heads, -1, D) @ rotated(k_packed).transpose(-1, -2)
    last = attn_split.row_limits(H, kv_heads, n, ctx, "cpu")
    scores = scores.masked_fill(torch.arange(ctx)[None, :] > last[:, None], float("-inf"))
    out = torch.softmax(scores, dim=-1) @ rotated(v_packed)
    return _unrotate64(out.reshape(B, H, n, D), fmt)


def _unrotate64(out: torch.Tensor, fmt) -> torch.Tensor:
    D = out.shape[-1]
    g = fmt.group_for(D)
    y = out.reshape(*out.shape[:-1], D // g, g)
    if fmt.rotate:
        y = fwht(y)
    return (y * fmt.sign_vector(g).double()).reshape(out.shape)


@njit(cache=True, inline="always")
def _decode_row(codes, norm_bits, row, levels, k, L, g, out, j):
    """Rotated-domain values of cache row `row` into column j of out [D, TILE]: per group, a
    shift register started from the stream's last L bits (the tail-biting wrap), fed 8 symbols
    (k bytes) at a time; level x norm."""
    groups = out.shape[0] // g
    mask = (1 << L) - 1
    low = (1 << k) - 1
    for gi in range(groups):
        stream = codes[row * groups + gi]
        norm = f16_bits_to_f32(norm_bits[row, gi])
        state = 0
        for t in range(g - (L + k - 1) // k, g):
            state = ((state << k) | symbol_at(stream, k * t, k)) & mask
        for base in range(0, g, 8):  # 8 values = k whole bytes of the stream
            word = 0
            for b in range(k):
                word = (word << 8) | stream[k * (base // 8) + b]
            for i in range(8):
                state = ((state << k) | ((word >> (k * (7 - i))) & low)) & mask
                out[gi * g + base + i, j] = levels[state] * norm


@njit(parallel=True, cache=True)
def attend_splits(q, limit, k_codes, k_norms, v_codes, v_norms, levels, k, L, g, ctx, chunk, m_out, l_out, acc_out):
    """Split-K online softmax: q [P, M, D] rotated and scaled, cache row of key t for program p is
    t * P + p; writes each (p, split)'s running max, sum and unnormalized value sum. Keys go TILE
    at a time into scratch laid out so that the inner loops run over contiguous memory: keys
    [D, TILE] (scores: across keys), values [TILE, D] (weighted sum: across columns)."""
    P, M, D = q.shape
    splits = m_out.shape[1]
    for task in prange(P * splits):
        p = task // splits
        split = task % splits
        keys = np.empty((D, TILE), np.float32)
        values = np.empty((TILE, D), np.float32)
        values_by_column = values.T
        w = np.empty(TILE, np.float32)
        run_max = np.full(M, -np.inf, np.float32)
        run_sum = np.zeros(M, np.float32)
        acc = np.zeros((M, D), np.float32)
        for t0 in range(split * chunk, min(ctx, (split + 1) * chunk), TILE):
            count = min(TILE, ctx - t0, (split + 1) * chunk - t0)
            seen = 0  # keys of the tile any row may read (causal: a prefix)
            for m in range(M):
                seen = max(seen, min(count, limit[m] - t0 + 1))
            for j in range(seen):
                _decode_row(k_codes, k_norms, (t0 + j) * P + p, levels, k, L, g, keys, j)
                _decode_row(v_codes, v_norms, (t0 + j) * P + p, levels, k, L, g, values_by_column, j)
            for m in range(M):
                visible = min(count, limit[m] - t0 + 1)
                if visible <= 0:
                    continue
                w[:visible] = 0.0
                for c in range(D):
                    qc = q[p, m, c]
                    for j in range(visible):
                        w[j] += qc * keys[c, j]
                top = run_max[m]
                for j in range(visible):
                    top = max(top, w[j])
                alpha = np.float32(math.exp(run_max[m] - top))
                total = np.float32(0.0)
                for j in range(visible):
                    e = np.float32(math.exp(w[j] - top))
                    w[j] = e
                    total += e
                run_sum[m] = run_sum[m] * alpha + total
                run_max[m] = top
                for c in range(D):
                    acc[m, c] *= alpha
                for j in range(visible):
                    wj = w[j]
                    for c in range(D):
                        acc[m, c] += wj * values[j, c]
        for m in range(M):
            m_out[p, split, m] = run_max[m]
            l_out[p, split, m] = run_sum[m]
            for c in range(D):
                acc_out[p, split, m, c] = acc[m, c]


class TcqNativeCache:
    """A packed TCQ K/V pair made ready for attend_splits; query token i sees positions
    0 .. limits[i]-1. `prefix` views its first positions for another query shape at no copy."""

    def __init__(self, fmt, pk, pv, limits):
        ctx, batch, kv_heads, dim = pk.shape
        g = fmt.group_for(dim)
        groups = dim // g

        def arrays(packed):
            codes = packed["codes"].reshape(ctx * batch * kv_heads * groups, g * fmt.bits // 8).contiguous().numpy()
            norms = packed["norms"].reshape(ctx * batch * kv_heads, groups).contiguous()
            return codes, norms.view(torch.int16).numpy().view(np.uint16)

        self.fmt, self.g, self.levels = fmt, g, fmt.levels(g)
        self._setup(arrays(pk), arrays(pv), tuple(pk.shape), limits)

    def prefix(self, length: int, limits) -> TcqNativeCache:
        view = object.__new__(TcqNativeCache)
        view.fmt, view.g, view.levels = self.fmt, self.g, self.levels
        rows = length * self.rows
        groups = self.shape[-1] // self.g
        view._setup(*[(codes[:rows * groups], norms[:rows]) for codes, norms in (self.k, self.v)],
                    (length, *self.shape[1:]), limits)
        return view

    def _setup(self, k, v, shape, limits):
        ctx, batch, kv_heads, _ = shape
        self.k, self.v, self.shape, self.rows = k, v, shape, batch * kv_heads
        self.limits = np.asarray(limits, dtype=np.int64)
        if len(self.limits) == 0 or self.limits.min() < 1 or self.limits.max() > ctx:
            raise ValueError(f"native attention: query limits {self.limits.tolist()} outside 1..{ctx}")
        splits = attn_split.split_count(ctx, self.rows, TILE, SPLITS_PER_THREAD * numba.get_num_threads())
        self.chunk = attn_split.split_chunk(ctx, splits, TILE)
        self.splits = -(-ctx // self.chunk)

    def native(self, q: torch.Tensor) -> torch.Tensor:
        B, H, n, D = q.shape
        ctx, batch, kv_heads, _ = self.shape
        if (B, n) != (batch, len(self.limits)) or H % kv_heads:
            raise ValueError(f"native attention: query {tuple(q.shape)} does not fit a cache of batch {batch}, "
                             f"{kv_heads} KV heads and {len(self.limits)} query tokens")
        M = (H // kv_heads) * n
        last = np.tile(self.limits - 1, H // kv_heads).astype(np.int32)  # rows ordered head, then token
        m = np.empty((self.rows, self.splits, M), np.float32)
        l = np.empty_like(m)
        acc = np.empty((self.rows, self.splits, M, D), np.float32)
        attend_splits(attn_split.query_rows(q, kv_heads, self.fmt).numpy(), last, *self.k, *self.v, self.levels,
                      self.fmt.trellis.k, self.fmt.trellis.L, self.g, ctx, self.chunk, m, l, acc)
        merged = attn_split.merge(*(torch.from_numpy(a) for a in (m, l, acc)))
        return attn_split.finish(merged, self.fmt, B, H, n)


@variant("attn_decode", backend="numba", name="native", formats=is_tcq, needs=("numba",))
def attn_decode_tcq_numba(case):
    """query rotated once; keys and values decoded 32 at a time from their bit streams (shift
    register + table) in the rotated domain; split-K over the context in parallel, exact merge,
    one rotation back"""
    q, k, v = attn_split.encode_cache(case)
    cache = TcqNativeCache(case.format_obj, k, v, causal_limits(q.shape[2], case.ctx))
    return lambda: cache.native(q)
