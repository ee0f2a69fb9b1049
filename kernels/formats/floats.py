"""Unquantized baselines: f32, f16, bf16. Packed field `values` holds the tensor as stored."""
from __future__ import annotations

import torch

from . import register
from .base import Format, FormatError, Packed


class _FloatFormat(Format):
    family = "float"
    dtype: torch.dtype = torch.float32
    encode_flops_per_value = 0.0
    decode_flops_per_value = 0.0

    def __init__(self):
        super().__init__()

    def bits_per_value_for(self, dim: int) -> float:
        return float(torch.finfo(self.dtype).bits)

    def _encode(self, x: torch.Tensor) -> Packed:
        values = x.to(self.dtype).contiguous()
        if not bool(torch.isfinite(values).all()):
            largest = float(x.abs().max())
            raise FormatError(f"{self.spec}: values too large: |x| up to {largest:.4g} overflows {self.dtype} "
                              f"(largest finite {torch.finfo(self.dtype).max:.4g})")
        return Packed(self.spec, tuple(x.shape), {"values": values})

    def _decode(self, packed: Packed) -> torch.Tensor:
        return packed["values"]


@register
class F32(_FloatFormat):
    name = "f32"
    dtype = torch.float32


@register
class F16(_FloatFormat):
    name = "f16"
    dtype = torch.float16


@register
class BF16(_FloatFormat):
    name = "bf16"
    dtype = torch.bfloat16
