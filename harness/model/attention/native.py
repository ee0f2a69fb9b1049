"""Attention backends `native` and `sparse_v`: the numba kernels reading the packed cache
(kernels/attention/numba.py), wired into the model's attention registry.

They run where the kernels apply and fall back to `dequant_sdpa` (same result up to float
rounding, slower or not) where they do not:
  - an unquantized store, or a format without a native kernel (floats, TCQ);
  - K and V stored in different formats (the kernels read both in one format's domain);
  - tensors not on the CPU (the kernels are numba CPU code);
  - a mask that is not a prefix per query (each query must see positions 0..limit-1; the
    model's causal masks, prefill and CUDA-graph style, all are).
`sparse_v` uses kernels/attention/torch.SPARSE_V_THRESHOLD; its skipped fraction is reported by the
`attn_decode` op's sparse_v variants, not here.
"""
from __future__ import annotations

import torch

from quantbench.harness.model.attention.registry import register_attention
from quantbench.harness.model.attention.sdpa import dequant_sdpa


def _limits(mask, n: int, length: int) -> torch.Tensor | None:
    """Per query token, how many leading positions it sees; None when the mask is not of that form."""
    if mask is None:
        return torch.full((n,), length, dtype=torch.int64)
    limits = mask.sum(-1).to(torch.int64).cpu()
    prefix = torch.arange(length)[None, :] < limits[:, None]
    if mask.shape != (n, length) or not torch.equal(mask.cpu(), prefix) or int(limits.min()) < 1:
        return None
    return limits


def _native_cache(q, k_store, v_store, length: int, mask):
    """The kernels' view of the cache, or None when this call must fall back to dequant_sdpa."""
    from quantbench.kernels.attention.layout import unsupported_reason

    fmt = k_store.format
    if unsupported_reason(fmt) or v_store.format is None or v_store.format.spec != fmt.spec or q.device.type != "cpu":
        return None
    limits = _limits(mask, q.shape[2], length)
    if limits is None:
        return None
    from quantbench.kernels.attention.numba import NativeCache

    return NativeCache(fmt, k_store.packed(length), v_store.packed(length), limits.numpy())


@register_attention("native")
def native(q, k_store, v_store, length: int, mask):
    """Flash-decoding on the packed codes (numba); dequant_sdpa where it does not apply."""
    cache = _native_cache(q, k_store, v_store, length, mask)
    if cache is None:
        return dequant_sdpa(q, k_store, v_store, length, mask)
    return cache.native(q).to(q.dtype)


@register_attention("sparse_v")
def sparse_v(q, k_store, v_store, length: int, mask):
    """Exact normalizer, then only the value rows weighted above the threshold (numba); dequant_sdpa
    where the kernels do not apply."""
    cache = _native_cache(q, k_store, v_store, length, mask)
    if cache is None:
        return dequant_sdpa(q, k_store, v_store, length, mask)
    from quantbench.kernels.attention.torch import SPARSE_V_THRESHOLD

    return cache.sparse_v(q, SPARSE_V_THRESHOLD)[0].to(q.dtype)
