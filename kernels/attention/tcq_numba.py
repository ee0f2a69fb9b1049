"""Native attention decode for the trellis formats turbo2_tcq / turbo3_tcq (issue 6).

A TCQ value decodes from the L-bit window of its group's bit stream that ends with its own k bits
and one table lookup, in the rotated domain; so, as for turbo (attn_split), the query is rotated
once per head, each key's rotated levels are decoded into a scratch row and scored, each value's
rotated levels are accumulated under an online softmax, and the sum is rotated back once.

  native_reference   torch float64 attention in the rotated domain (the math, checked against
                     attention over the dequantized cache)
  numba/native       the native kernels of kernels/attention/numba.py (tiles of decoded rows,
                     split-K over the context in parallel, exact merge) over a TcqPlan: rows
                     decoded by a shift register over the stream (numba_rows._decode_tcq)
The numba-cuda placement variants (const / shared / registers) are in attention/cuda.py.

At 32K context (9 heads, 3 KV heads, dim 64), 2 threads on a 2-core Xeon: 13.0 ms a call with a
kernel of its own (scalar exponentials, strided key columns, a task per KV head), 3.6 ms so
(the states decoded 8 at a time by one vector shift and a gather), 2.4 ms with every row of a tile
in one decoder call (numba_trellis.trellis_to_f32; on one thread 5.5 -> 4.2 ms).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from quantbench.kernels.attention import split as attn_split
from quantbench.kernels.attention.layout import KIND_TCQ
from quantbench.kernels.attention.numba import NativeCache
from quantbench.kernels.attention.spec import causal_limits
from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.formats.turbo_tcq import _levels_tensor, stream_states_torch
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import is_tcq


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


@dataclass(frozen=True, eq=False)
class TcqPlan:
    """layout.NativePlan's interface for a trellis format, so that NativeCache and its kernels
    (kernels/attention/numba.py) read it: rows decoded by numba_rows' trellis decoder in the rotated
    domain, the query rotated once per head, the output rotated back once."""

    fmt: object
    dim: int
    kind = KIND_TCQ
    qjl = False

    @property
    def bits(self) -> int:
        return self.fmt.trellis.k  # stream bits per value: the decoder's compile-time constant

    @property
    def code_group(self) -> int:
        return self.fmt.group_for(self.dim)

    @property
    def codebook(self) -> np.ndarray:
        return np.asarray(self.fmt.levels(self.code_group), np.float32)  # the 2^L trellis states' levels

    @property
    def width(self) -> int:
        return self.dim

    @functools.cached_property
    def _query_matrix(self) -> torch.Tensor:
        """float64 [dim, dim]: q -> scaled and rotated (attn_split.query_rows, applied to the identity).
        A matrix product per call in place of the rotation's torch ops: 131 -> 16 us a decode step."""
        eye = torch.eye(self.dim, dtype=torch.float64).reshape(1, self.dim, 1, self.dim)
        return attn_split.query_rows(eye, self.dim, self.fmt, torch.float64).reshape(self.dim, self.dim)

    @functools.cached_property
    def _output_matrix(self) -> torch.Tensor:
        """float64 [dim, dim]: accumulated rows -> the output rotated back (attn_split.finish's map)."""
        eye = torch.eye(self.dim, dtype=torch.float64).reshape(self.dim, 1, self.dim)
        return attn_split.finish(eye, self.fmt, 1, self.dim, 1).reshape(self.dim, self.dim)

    def query(self, q: torch.Tensor) -> torch.Tensor:
        return (q.double() @ self._query_matrix).float().contiguous()

    def output(self, acc: torch.Tensor) -> torch.Tensor:
        return (acc.double() @ self._output_matrix).float()

    def rows(self, packed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(codes [ctx, rows, groups, stream bytes] uint8, no extra, norms [ctx, rows, groups] as
        uint16 bits, no second scales), views of the packed fields."""
        ctx, batch, kv_heads = packed.shape[:3]
        rows, groups = batch * kv_heads, self.dim // self.code_group
        codes = packed["codes"].contiguous().view(torch.uint8).reshape(ctx, rows, groups, -1).numpy()
        norms = packed["norms"].contiguous().view(torch.int16).reshape(ctx, rows, groups).numpy().view(np.uint16)
        return codes, np.zeros((ctx, rows, 0), np.uint8), norms, np.zeros((ctx, rows, 0), np.uint16)


class TcqNativeCache(NativeCache):
    """A packed TCQ K/V pair made ready for the native kernels (NativeCache with a TcqPlan)."""

    def __init__(self, fmt, pk, pv, limits):
        super().__init__(fmt, pk, pv, limits, plan=TcqPlan(fmt, pk.shape[-1]))


@variant("attn_decode", backend="numba", name="native", formats=is_tcq, needs=("numba",))
def attn_decode_tcq_numba(case):
    """query rotated once; keys and values decoded 32 at a time from their bit streams (shift
    register + table) in the rotated domain; split-K over the context in parallel, exact merge,
    one rotation back"""
    q, k, v = attn_split.encode_cache(case)
    cache = TcqNativeCache(case.format_obj, k, v, causal_limits(q.shape[2], case.ctx))
    return lambda: cache.native(q)
