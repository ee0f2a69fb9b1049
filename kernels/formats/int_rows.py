"""int8 and int4: symmetric integers with one fp32 absmax scale per row of the last dimension.

Per token for activations (the dynamic per-token quantization of W8A8 / W4A4 schemes: SmoothQuant's
per-token int8, QuaRot's int4 activations), per output channel for a weight [out, in], per token and
head in a KV cache.

Encode: d = amax / qmax with qmax = 2^(bits-1) - 1 (127, 7), q = round(x / d) (ties to even), clamped
to [-qmax, qmax]; a row whose d is 0 (all zeros, or an amax that underflows) gets d = 1. Decode: q * d.
`quantize_rows` is the same arithmetic for kernels that keep the codes as int8.

Packed fields: `scales` float32 [...]; `codes` int8 [..., dim] (int8) or uint8 [..., dim / 2] (int4:
q + 8 of value 2j in the low nibble, of value 2j + 1 in the high one). Bits per value: bits + 32 / dim.
"""
from __future__ import annotations

import torch

from . import register
from .base import Format, Packed


def quantize_rows(x: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8 [..., dim], scales float32 [...]) of x along its last dimension."""
    x = x.to(torch.float32)
    scales = x.abs().amax(-1) / qmax
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(x / scales.unsqueeze(-1)).clamp(-qmax, qmax).to(torch.int8)
    return codes, scales


class IntRows(Format):
    family = "integer"
    bits = 8
    encode_flops_per_value = 4.0  # |x|, max, divide, round
    decode_flops_per_value = 1.0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def bits_per_value_for(self, dim: int) -> float:
        return self.bits + 32 / dim

    def bytes_for(self, rows: int, dim: int) -> int:
        return rows * dim * self.bits // 8 + 4 * rows

    def _encode(self, x: torch.Tensor) -> Packed:
        codes, scales = quantize_rows(x, self.qmax)
        return Packed(self.spec, tuple(x.shape), {"codes": self._pack(codes), "scales": scales.contiguous()})

    def _decode(self, packed: Packed) -> torch.Tensor:
        return self._unpack(packed["codes"]).to(torch.float32) * packed["scales"].unsqueeze(-1)

    def _pack(self, codes: torch.Tensor) -> torch.Tensor:
        return codes

    def _unpack(self, codes: torch.Tensor) -> torch.Tensor:
        return codes


@register
class Int8Rows(IntRows):
    name = "int8"
    bits = 8


@register
class Int4Rows(IntRows):
    name = "int4"
    bits = 4
    block = 2  # two codes per byte

    def _pack(self, codes: torch.Tensor) -> torch.Tensor:
        nibbles = (codes + 8).to(torch.uint8)
        return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)

    def _unpack(self, codes: torch.Tensor) -> torch.Tensor:
        low, high = (codes & 0xF).to(torch.int8) - 8, (codes >> 4).to(torch.int8) - 8
        return torch.stack((low, high), dim=-1).flatten(-2)
