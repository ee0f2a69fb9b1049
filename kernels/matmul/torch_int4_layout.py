"""A q4_0 weight in the layout of torch's int4 weight kernels, shared by their CPU form
(torch_int4.py: `_weight_int4pack_mm_for_cpu`) and their CUDA form (torch_int4_cuda.py: tinygemm,
`_weight_int4pack_mm`).

torch dequantizes the 4-bit code c of group g of an output row as (c - 8) * scale + zero, with one
(scale, zero) pair per group of GROUP values along k, stored in the activations' dtype as
[k / GROUP, n, 2]. Which of llama.cpp's 32-value formats that holds exactly:

* q4_0 (x = (q - 8) * d, an fp16 d per block): c = q, scale = d, zero = 0. An fp16 d is exact in
  float32 (and float16), (c - 8) * d has at most 11 + 4 significant bits and adding the zero is
  exact, so with float32 activations torch's weights equal the format's decode exactly. In
  bfloat16 (8 significant bits) d itself rounds, by up to 2^-8 of the weight.
* q4_1 (x = q * d + m) needs zero = m + 8 d: two fp16 values whose sum rounds in any of torch's
  dtypes once their exponents are far enough apart (in bfloat16 almost always), by a fraction of the
  block's offset rather than of the value. It is not served.
"""
from __future__ import annotations

import torch

from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.ggml_blocks import unpack_nibbles

FORMATS = ("q4_0",)
GROUP = 32  # q4_0's block: torch's group size along k


def codes(packed: Packed) -> torch.Tensor:
    """q4_0's codes as int32 [n, k], values 0..15: torch's code is q4_0's q, offset 8 included."""
    n, k = packed.shape
    return unpack_nibbles(packed["qs"]).reshape(n, k).to(torch.int32)


def scales_and_zeros(packed: Packed, dtype: torch.dtype) -> torch.Tensor:
    """torch's (scale, zero) pairs [k / GROUP, n, 2] of a q4_0 weight: (d, 0) in `dtype`."""
    d = packed["d"].to(dtype)
    return torch.stack((d, torch.zeros_like(d)), dim=-1).transpose(0, 1).contiguous()


def cuda_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """int32 codes [n, k] -> the uint8 [n, k / 2] that `_convert_weight_to_int4pack` takes: value 2j
    in the high nibble of byte j, value 2j + 1 in the low one (q4_0 pairs j with j + 16 instead)."""
    return ((codes[:, 0::2] << 4) | codes[:, 1::2]).to(torch.uint8)


def inner_k_tiles(k: int) -> int:
    """tinygemm's 16-value k-tiles per packed load: 8, 4 or 2, the most that divide k (a multiple of
    GROUP, so 2 always does)."""
    return next(t for t in (8, 4, 2) if k % (16 * t) == 0)
