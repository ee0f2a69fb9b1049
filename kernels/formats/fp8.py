"""fp8_e4m3 and fp8_e5m2: a saturating cast to an OCP 8-bit float after dividing by an fp32 scale,
as vLLM's and TensorRT-LLM's fp8 KV caches store it.

Option `scale`: `row` (default: one fp32 scale per row of the last dimension, i.e. per token and
head of a KV cache, amax / the element's largest value), `tensor` (one scale for the whole encoded
tensor), `none` (scale 1: the plain saturating cast). The element conversion is torch's
float8_e4m3fn / float8_e5m2 cast of the clamped value, bit for bit (kernels/formats/minifloat.py
rounds the same way and the tests check it on every fp16 value).

Packed fields: `codes` uint8 [..., dim] (the fp8 bytes), `scales` float32 [...] (row), [] (tensor),
absent (none). Bits per value: 8 + 32/dim (row); 8 (tensor: plus 4 bytes per encoded tensor; none).
"""
from __future__ import annotations

import torch

from . import register
from .base import Format, FormatError, Packed
from .minifloat import E4M3, E5M2, Element

SCALES = ("row", "tensor", "none")


class FP8Format(Format):
    family = "float8"
    element: Element = E4M3
    dtype: torch.dtype = torch.float8_e4m3fn
    encode_flops_per_value = 4.0  # |x|, max, divide, cast
    decode_flops_per_value = 2.0  # cast, multiply

    def __init__(self, *, scale: str = "row"):
        if scale not in SCALES:
            raise FormatError(f"{self.name}: scale={scale!r} is not one of {', '.join(SCALES)}")
        super().__init__(**({} if scale == "row" else {"scale": scale}))
        self.scale = scale

    def bits_per_value_for(self, dim: int) -> float:
        return 8 + (32 / dim if self.scale == "row" else 0)

    def bytes_for(self, rows: int, dim: int) -> int:
        return rows * dim + 4 * (rows if self.scale == "row" else 1 if self.scale == "tensor" else 0)

    def _scales(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.scale == "none":
            return None
        if self.scale == "row":
            amax = x.abs().amax(-1)
        else:
            amax = x.abs().amax() if x.numel() else torch.zeros((), device=x.device)
        return torch.where(amax > 0, amax / self.element.max_normal, torch.ones_like(amax))

    def _encode(self, x: torch.Tensor) -> Packed:
        x = x.to(torch.float32)
        scales = self._scales(x)
        y = x if scales is None else x / (scales.unsqueeze(-1) if self.scale == "row" else scales)
        limit = self.element.max_normal
        fields = {"codes": y.clamp(-limit, limit).to(self.dtype).view(torch.uint8)}
        if scales is not None:
            fields["scales"] = scales.contiguous()
        return Packed(self.spec, tuple(x.shape), fields)

    def _decode(self, packed: Packed) -> torch.Tensor:
        y = packed["codes"].view(self.dtype).to(torch.float32)
        if self.scale == "none":
            return y
        scales = packed["scales"]
        return y * (scales.unsqueeze(-1) if self.scale == "row" else scales)


@register
class FP8E4M3(FP8Format):
    name = "fp8_e4m3"
    element = E4M3
    dtype = torch.float8_e4m3fn


@register
class FP8E5M2(FP8Format):
    name = "fp8_e5m2"
    element = E5M2
    dtype = torch.float8_e5m2
