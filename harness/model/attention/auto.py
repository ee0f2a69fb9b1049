"""The attention backend `auto`: per call, the faster of the other backends for what it reads.

- A decode step (one query token): `native`, which itself falls back to `dequant_sdpa` where no
  kernel reads the store (unquantized, the float micro formats, mixed K/V formats). On a rotated
  format decoding the cache to floats would run the inverse rotation on every position at every
  step; the native kernels rotate the query once. On the block formats the native kernels came to
  win too once they scored and added 16 positions at a time (numba_row_math): at depth 1024 on a
  2-core Xeon, SmolLM2's decode ran at 23.3 / 23.6 tokens/s with q8_0 / q4_0 native against 22.3 /
  22.0 through dequant_sdpa (f16: 22.2); on the 2-core EPYC before that, a layer's call took q4_0
  208 us through dequant_sdpa against 240 native, q8_0 204 against 134.
- Prefill (many query tokens): `dequant_sdpa`. Prefill's queries are a matrix product for torch's
  SDPA over the decoded prefix, not for our kernels (q8_0 at depth 1024: 558 against 449 tokens/s).
Both give the same result up to float rounding (tests/test_attention_model.py).
"""
from __future__ import annotations

from quantbench.harness.model.attention.native import native
from quantbench.harness.model.attention.registry import register_attention
from quantbench.harness.model.attention.sdpa import dequant_sdpa


@register_attention("auto")
def auto(q, k_store, v_store, length: int, mask):
    if q.shape[2] == 1:
        return native(q, k_store, v_store, length, mask)
    return dequant_sdpa(q, k_store, v_store, length, mask)
