"""The torch side of the split-K (flash-decoding) native attention kernels: query preparation, the
per-row causal limits, the exact merge of the splits' partial softmax, and the rotation back.

Shapes: q [batch, heads, n, dim]; the cache [ctx, batch, kv_heads, dim], encoded by a format along
dim. Query head h reads KV head h // (heads / kv_heads). The kernels see, per (batch, kv head),
M = (heads / kv_heads) * n query rows (ordered head, then token) and write for each split s of the
context its running max m, its sum of exponentials l and its unnormalized value sum acc [M, dim].

Rotated formats (turbo, tcq) store a key as k = R^T r with R y = H (s * y) / sqrt(g) orthonormal
per group, so q . k = (R q) . r: the query is rotated once (in float64) and the keys are never
rotated; likewise sum_j p_j v_j = R^T sum_j p_j r_j is rotated back once, after the merge.
"""
from __future__ import annotations

import math

import torch

from quantbench.kernels.formats.rotation import fwht


def is_rotated(fmt) -> bool:
    return fmt.family in ("codebook", "trellis")


def softmax_scale(dim: int) -> float:
    return 1.0 / math.sqrt(dim)


def query_rows(q: torch.Tensor, kv_heads: int, fmt, dtype=torch.float32) -> torch.Tensor:
    """q [B, H, n, D] -> [B * KVH, M, D] in `dtype`: scaled by 1/sqrt(D), rotated per group for a
    rotated format (computed in float64, rounded once)."""
    B, H, n, D = q.shape
    x = q.double() * softmax_scale(D)
    if is_rotated(fmt):
        g = fmt.group_for(D)
        x = x.reshape(B, H, n, D // g, g) * fmt.sign_vector(g).to(x.device, torch.float64)
        if fmt.rotate:
            x = fwht(x)
        x = x.reshape(B, H, n, D)
    return x.reshape(B * kv_heads, (H // kv_heads) * n, D).to(dtype).contiguous()


def row_limits(heads: int, kv_heads: int, n: int, ctx: int, device) -> torch.Tensor:
    """int32 [M]: the last key position each query row may read. Decode is causal (as the op
    attn_decode, kernels/attention/spec.py): the n queries are the last n positions of the
    context, token i reads keys 0 .. ctx - n + i."""
    token = torch.arange(n, dtype=torch.int32).repeat(heads // kv_heads)
    return (ctx - n + token).to(device)


def split_chunk(ctx: int, splits: int, block: int) -> int:
    """Keys per split: ctx / splits rounded up to a whole number of `block`-key tiles."""
    per = -(-ctx // splits)
    return -(-per // block) * block


def merge(m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """Exact merge of the splits: m, l [P, S, M], acc [P, S, M, D] -> [P, M, D] float32.
    A split that saw no key has m = -inf and l = 0 and gets weight 0."""
    top = m.amax(dim=1, keepdim=True)
    weight = torch.exp(m - torch.where(torch.isinf(top), torch.zeros_like(top), top))
    total = (weight * l).sum(dim=1)
    return (weight.unsqueeze(-1) * acc).sum(dim=1) / total.unsqueeze(-1)


def finish(rows: torch.Tensor, fmt, batch: int, heads: int, n: int) -> torch.Tensor:
    """Merged rows [B * KVH, M, D] -> out [B, H, n, D] float32, rotated back for a rotated format."""
    D = rows.shape[-1]
    out = rows.reshape(batch, heads, n, D)
    if is_rotated(fmt):
        g = fmt.group_for(D)
        y = out.reshape(batch, heads, n, D // g, g)
        if fmt.rotate:
            y = fwht(y)
        out = (y * fmt.sign_vector(g).to(y.device)).reshape(batch, heads, n, D)
    return out.contiguous()


def encode_cache(case):
    """The case's inputs with k and v encoded by its format (on the CPU, as the reference does,
    then moved to the case's device): (q, packed k, packed v)."""
    inputs = case.inputs()
    fmt = case.format_obj
    k, v = (fmt.encode(inputs[name].cpu()).to(case.device) for name in ("k", "v"))
    return inputs["q"], k, v


def split_count(ctx: int, programs: int, block: int, target_programs: int) -> int:
    """Splits of the context per (batch, kv head): enough for `target_programs` programs in all,
    never more splits than tiles of `block` keys."""
    tiles = -(-ctx // block)
    return max(1, min(tiles, -(-target_programs // programs)))


def target_programs(device, programs: int) -> int:
    """Programs to launch: four per SM on a GPU; on the CPU (Triton interpreter, CUDA simulator)
    two splits per (batch, kv head), so that the merge is exercised."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 2 * programs
