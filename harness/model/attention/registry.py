"""The registry of attention backends over a KV cache, by name.

A backend is `fn(q, k_store, v_store, length, mask) -> out`:
    q      [batch, n_heads, n, head_dim], RoPE applied
    k/v    KVStore: `.read(length, dtype)` decodes positions 0..length-1 to
           [length, batch, kv_heads, head_dim]; `.packed(length)` gives the stored form
    mask   bool [n, length], True where a query may attend; None means every position
    out    [batch, n_heads, n, head_dim]
"""
from __future__ import annotations

from typing import Callable

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
