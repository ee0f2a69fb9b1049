"""Attention over stores that keep recent positions apart (a recent window, kv_techniques/window.py;
kivi's unquantized residual, token_group_store.py): for each query and key, the key and value come
from the store's `read_recent` where its `recent_mask` says the key is recent for that query, else
from `read`.

Scores are q . k_recent or q . k_old per pair; the softmax runs over the mixed scores; the output is
P_recent @ V_recent + P_old @ V_old. A query's position is the last one its mask lets it see (the
model's causal masks), or, without a mask, the last `n` positions. Float32 einsums, not SDPA: the
per-pair choice of K is no mask SDPA can take.
"""
from __future__ import annotations

import math

import torch


def _recent(store, length: int, dtype: torch.dtype, old: torch.Tensor) -> torch.Tensor:
    return store.read_recent(length, dtype) if store.recent_mask is not None else old


def _recent_mask(store, positions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    if store.recent_mask is None:
        return torch.zeros(positions.shape[0], keys.shape[1], dtype=torch.bool, device=keys.device)
    return store.recent_mask(positions, keys)


def _heads(x: torch.Tensor, group: int) -> torch.Tensor:
    """[length, batch, kv_heads, d] -> [batch, kv_heads * group, length, d]."""
    return x.permute(1, 2, 0, 3).repeat_interleave(group, dim=1)


def query_positions(mask, n: int, length: int, device) -> torch.Tensor:
    if mask is None:
        return torch.arange(length - n, length, device=device)
    return mask.to(torch.int64).sum(-1) - 1


def windowed_sdpa(q, k_store, v_store, length: int, mask):
    batch, n_heads, n, head_dim = q.shape
    dtype = q.dtype
    k_old, v_old = k_store.read(length, dtype), v_store.read(length, dtype)
    k_new, v_new = _recent(k_store, length, dtype, k_old), _recent(v_store, length, dtype, v_old)
    group = n_heads // k_old.shape[2]
    k_old, k_new, v_old, v_new = (_heads(x, group) for x in (k_old, k_new, v_old, v_new))
    positions = query_positions(mask, n, length, q.device)[:, None]
    keys = torch.arange(length, device=q.device)[None, :]
    allowed = keys <= positions if mask is None else mask.to(torch.bool)
    k_recent, v_recent = _recent_mask(k_store, positions, keys), _recent_mask(v_store, positions, keys)
    scale = 1.0 / math.sqrt(head_dim)
    scores = torch.where(k_recent, q @ k_new.transpose(-1, -2), q @ k_old.transpose(-1, -2)) * scale
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return (weights * v_recent) @ v_new + (weights * ~v_recent) @ v_old
