"""Attention over stores that keep recent positions apart (a recent window, kv_techniques/window.py;
kivi's unquantized residual, token_group_store.py): for each query and key, the key and value come
from the store's `read_recent` where its `recent_mask` says the key is recent for that query, else
from `read`.

Scores are q . k_recent or q . k_old per pair; the softmax runs over the mixed scores; the output is
P_recent @ V_recent + P_old @ V_old. A query's position is the last one its mask lets it see (the
model's causal masks), or, without a mask, the last `n` positions. Float32 matmuls, not SDPA: the
per-pair choice of K is no mask SDPA can take. One query (decode) is the exception: each key is
recent or not for it alone, so its rows are picked once and SDPA takes the rest.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _recent(store, length: int, dtype: torch.dtype, old: torch.Tensor) -> torch.Tensor:
    return store.read_recent(length, dtype) if store.recent_mask is not None else old


def _recent_mask(store, positions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    if store.recent_mask is None:
        return torch.zeros(positions.shape[0], keys.shape[1], dtype=torch.bool, device=keys.device)
    return store.recent_mask(positions, keys)


def _by_kv_head(x: torch.Tensor) -> torch.Tensor:
    """[length, batch, kv_heads, d] -> [batch, kv_heads, length, d]."""
    return x.permute(1, 2, 0, 3)


def _pick(recent: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Rows [length, batch, kv_heads, d] from `new` where recent [length] is set, else from `old`."""
    return torch.where(recent[:, None, None, None], new, old)


def query_positions(mask, n: int, length: int, device) -> torch.Tensor:
    if mask is None:
        return torch.arange(length - n, length, device=device)
    return mask.to(torch.int64).sum(-1) - 1


def windowed_sdpa(q, k_store, v_store, length: int, mask):
    """The query heads of a KV head share its rows: q is viewed [batch, kv_heads, group * n, d]
    (head h reads KV head h // group), never the K/V rows copied per head. With one query a key is
    recent or not for every head, so its row is picked once and the attention is a plain one."""
    batch, n_heads, n, head_dim = q.shape
    dtype = q.dtype
    k_old, v_old = k_store.read(length, dtype), v_store.read(length, dtype)
    k_new, v_new = _recent(k_store, length, dtype, k_old), _recent(v_store, length, dtype, v_old)
    kv_heads = k_old.shape[2]
    group = n_heads // kv_heads
    positions = query_positions(mask, n, length, q.device)[:, None]
    keys = torch.arange(length, device=q.device)[None, :]
    allowed = keys <= positions if mask is None else mask.to(torch.bool)
    k_recent, v_recent = _recent_mask(k_store, positions, keys), _recent_mask(v_store, positions, keys)
    qg = q.reshape(batch, kv_heads, group * n, head_dim)
    if n == 1:
        k = _by_kv_head(_pick(k_recent[0], k_new, k_old))
        v = _by_kv_head(_pick(v_recent[0], v_new, v_old))
        return F.scaled_dot_product_attention(qg, k, v, attn_mask=allowed).reshape(batch, n_heads, 1, head_dim)
    k_old, k_new, v_old, v_new = (_by_kv_head(x) for x in (k_old, k_new, v_old, v_new))
    allowed, k_recent, v_recent = (m.repeat(group, 1) for m in (allowed, k_recent, v_recent))
    scale = 1.0 / math.sqrt(head_dim)
    scores = torch.where(k_recent, qg @ k_new.transpose(-1, -2), qg @ k_old.transpose(-1, -2)) * scale
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    out = (weights * v_recent) @ v_new + (weights * ~v_recent) @ v_old
    return out.reshape(batch, n_heads, n, head_dim)
