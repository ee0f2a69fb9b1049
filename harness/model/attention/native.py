"""Attention backends `native` and `sparse_v`: the numba kernels reading the packed cache
(kernels/attention/numba.py; the TCQ formats' kernel in kernels/attention/tcq_numba.py for
`native`), wired into the model's attention registry.

They run where the kernels apply and fall back to `dequant_sdpa` (same result up to float
rounding, slower or not) where they do not:
  - an unquantized store, or a format without a native kernel (floats; TCQ for sparse_v);
  - K and V stored in different formats (the kernels read both in one format's domain);
  - tensors not on the CPU (the kernels are numba CPU code);
  - a mask that is not a prefix per query (each query must see positions 0..limit-1; the
    model's causal masks, prefill and CUDA-graph style, all are).
`sparse_v` uses kernels/attention/torch.SPARSE_V_THRESHOLD; its skipped fraction is reported by the
`attn_decode` op's sparse_v variants, not here.

The kernels' view of a store pair is built once, over the whole preallocated cache, and each call
takes a prefix of it (building it costs more than a decode step's attention at depth 1024). Short prefixes
run on one numba thread (kernels/codecs/cache_codecs.threads_for says why).
"""
from __future__ import annotations

import weakref

import torch

from quantbench.harness.model.attention.registry import register_attention
from quantbench.harness.model.attention.sdpa import dequant_sdpa
from quantbench.kernels.attention.layout import is_native
from quantbench.kernels.codecs.cache_codecs import threads_for
from quantbench.kernels.tcq.spec import is_tcq

_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # K store -> (V store, kernel view)


def _limits(mask, n: int, length: int) -> torch.Tensor | None:
    """Per query token, how many leading positions it sees; None when the mask is not of that form."""
    if mask is None:
        return torch.full((n,), length, dtype=torch.int64)
    limits = mask.sum(-1).to(torch.int64).cpu()
    prefix = torch.arange(length)[None, :] < limits[:, None]
    if mask.shape != (n, length) or not torch.equal(mask.cpu(), prefix) or int(limits.min()) < 1:
        return None
    return limits


def _whole_cache(k_store, v_store, with_tcq: bool):
    """The kernels' view of the whole store pair, or None when they cannot read it."""
    fmt = k_store.format
    if fmt is None or v_store.format is None or v_store.format.spec != fmt.spec or \
            k_store.fields[next(iter(k_store.fields))].device.type != "cpu":
        return None
    cached = _VIEWS.get(k_store)
    if cached is not None and cached[0] is v_store:
        return cached[1]
    view = None
    length = k_store.max_len
    full = torch.full((1,), length, dtype=torch.int64)
    if is_native(fmt):
        from quantbench.kernels.attention.numba import NativeCache

        view = NativeCache(fmt, k_store.packed(length), v_store.packed(length), full)
    elif with_tcq and is_tcq(fmt):
        from quantbench.kernels.attention.tcq_numba import TcqNativeCache

        view = TcqNativeCache(fmt, k_store.packed(length), v_store.packed(length), full)
    _VIEWS[k_store] = (v_store, view)
    return view


def _native_cache(q, k_store, v_store, length: int, mask, with_tcq: bool = False):
    """The kernels' view of the cache prefix for this call, or None when it must fall back."""
    whole = _whole_cache(k_store, v_store, with_tcq)
    if whole is None:
        return None
    limits = _limits(mask, q.shape[2], length)
    if limits is None:
        return None
    return whole.prefix(length, limits.numpy())


def _threads(length: int, k_store):
    return threads_for(length * k_store.rows[0] * k_store.rows[1])


@register_attention("native")
def native(q, k_store, v_store, length: int, mask):
    """Flash-decoding on the packed codes (numba); dequant_sdpa where it does not apply."""
    cache = _native_cache(q, k_store, v_store, length, mask, with_tcq=True)
    if cache is None:
        return dequant_sdpa(q, k_store, v_store, length, mask)
    with _threads(length, k_store):
        return cache.native(q).to(q.dtype)


@register_attention("sparse_v")
def sparse_v(q, k_store, v_store, length: int, mask):
    """Exact normalizer, then only the value rows weighted above the threshold (numba); dequant_sdpa
    where the kernels do not apply."""
    cache = _native_cache(q, k_store, v_store, length, mask)
    if cache is None:
        return dequant_sdpa(q, k_store, v_store, length, mask)
    from quantbench.kernels.attention.torch import SPARSE_V_THRESHOLD

    with _threads(length, k_store):
        return cache.sparse_v(q, SPARSE_V_THRESHOLD)[0].to(q.dtype)
