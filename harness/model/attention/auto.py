"""The attention backend `auto`: per call, the faster of the other backends for what it reads.

- A decode step (one query token) on a rotated format (turbo*, the TCQ formats, the *_rot block
  formats): `native`. Decoding such a cache to floats runs the inverse rotation on every position
  at every step; the native kernels rotate the query once instead.
- Everything else, prefill included: `dequant_sdpa`. The block formats decode with one multiply
  per value, so dequantizing the prefix costs little, and torch's SDPA over it is about as fast as
  our kernels (at depth 1024 on the 2-core EPYC, a layer's call: q4_0 208 us against 240 native,
  q8_0 204 against 134); prefill's many queries are a matrix product for torch, not for our kernels.
Both give the same result up to float rounding (tests/test_attention_model.py).
"""
from __future__ import annotations

from quantbench.harness.model.attention.native import native
from quantbench.harness.model.attention.registry import register_attention
from quantbench.harness.model.attention.sdpa import dequant_sdpa


def _rotated(fmt) -> bool:
    return fmt is not None and (fmt.family in ("codebook", "trellis") or fmt.name.endswith("_rot"))


@register_attention("auto")
def auto(q, k_store, v_store, length: int, mask):
    if q.shape[2] == 1 and _rotated(k_store.format):
        return native(q, k_store, v_store, length, mask)
    return dequant_sdpa(q, k_store, v_store, length, mask)
