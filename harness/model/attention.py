"""Attention backends over a KV cache, registered by name.

A backend is `fn(q, k_store, v_store, length, mask) -> out`:
    q      [batch, n_heads, n, head_dim], RoPE applied
    k/v    KVStore: `.read(length, dtype)` decodes positions 0..length-1 to
           [length, batch, kv_heads, head_dim]; `.packed(length)` gives the stored form
    mask   bool [n, length], True where a query may attend; None means every position
    out    [batch, n_heads, n, head_dim]
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F

from quantbench.harness.errors import UserError

_BACKENDS: dict[str, Callable] = {}


def register_attention(name: str):
    def deco(fn):
        if name in _BACKENDS:
            raise ValueError(f"attention backend {name!r} registered twice")
        _BACKENDS[name] = fn
        return fn
    return deco


def attention_names() -> list[str]:
    return list(_BACKENDS)


def get_attention(name: str) -> Callable:
    if name not in _BACKENDS:
        raise UserError(f"unknown attention backend {name!r}; known: {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


@register_attention("dequant_sdpa")
def dequant_sdpa(q, k_store, v_store, length: int, mask):
    """Decode the cache prefix to q's dtype, then torch's scaled_dot_product_attention.

    Grouped-query attention without repeating K/V: the query heads sharing a KV head are
    folded into the query-position axis, [batch, kv_heads, group * n, head_dim].
    """
    batch, n_heads, n, head_dim = q.shape
    k = k_store.read(length, q.dtype).permute(1, 2, 0, 3)
    v = v_store.read(length, q.dtype).permute(1, 2, 0, 3)
    kv_heads = k.shape[1]
    group = n_heads // kv_heads
    q = q.reshape(batch, kv_heads, group * n, head_dim)
    if mask is not None:
        mask = mask.repeat(group, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.reshape(batch, n_heads, n, head_dim)

from . import attention_native  # noqa: E402,F401
