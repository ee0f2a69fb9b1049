"""The attention backend `dequant_sdpa`: decode the cache prefix, then torch's SDPA."""
from __future__ import annotations

import torch.nn.functional as F

from quantbench.harness.model.attention.registry import register_attention
from quantbench.harness.model.attention.windowed import windowed_sdpa


@register_attention("dequant_sdpa")
def dequant_sdpa(q, k_store, v_store, length: int, mask):
    """Decode the cache prefix to q's dtype, then torch's scaled_dot_product_attention.

    Grouped-query attention without repeating K/V: the query heads sharing a KV head are
    folded into the query-position axis, [batch, kv_heads, group * n, head_dim]. Stores with a
    recent window (kv_techniques/window.py) go to attention/windowed.py.
    """
    if k_store.recent_mask is not None or v_store.recent_mask is not None:
        return windowed_sdpa(q, k_store, v_store, length, mask)
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
