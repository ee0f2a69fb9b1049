"""nvfp4: NVIDIA's 4-bit float format: blocks of 16 E2M1 values with an E4M3 block scale, and one
fp32 scale per encoded tensor.

Encode (as NVIDIA describes NVFP4, "Introducing NVFP4 for efficient and accurate low-precision
inference", 2025, and TensorRT Model Optimizer quantizes it): the tensor scale is
amax(tensor) / (448 * 6), so that block scales span E4M3's range; each block's scale is
amax(block) / 6 / tensor scale, rounded to E4M3 (saturating); each element is
x / (block scale * tensor scale) rounded to E2M1 (ties to even, saturating at 6). Decode:
element * block scale * tensor scale. An all-zero tensor gets tensor scale 1.

Options: `scale` (`tensor`, default: the second-level fp32 scale is one per encoded tensor, as
NVFP4 weights have it; `row`: one per row of the last dimension, which a KV cache needs, since it
stores each token's rows as they come), `rotate`, `group`, `signs` (a randomized Hadamard rotation
first, as mxfp4:rotate=1).
Packed fields: `codes` uint8 [..., nblocks, 8] (two E2M1 codes a byte, low nibble first),
`scales` uint8 [..., nblocks] (E4M3 bytes), `tensor_scale` float32 [] (or [...] per row). Bits per
value: 4.5, plus 4 bytes per encoded tensor (tensor) or 32/dim (row).
"""
from __future__ import annotations

import torch

from . import register
from .base import Format, FormatError, Packed
from .minifloat import E2M1, E4M3, pack_codes, unpack_codes
from .optional_rotation import OptionalRotation

BLOCK = 16
SCALES = ("tensor", "row")
TENSOR_RANGE = E4M3.max_normal * E2M1.max_normal  # 448 * 6


@register
class NVFP4(OptionalRotation, Format):
    name = "nvfp4"
    family = "microscaling"
    block = BLOCK
    encode_flops_per_value = 7.0
    decode_flops_per_value = 3.0

    def __init__(self, *, scale: str = "tensor", rotate: bool = False, group: int | None = None,
                 signs: bool = True):
        if scale not in SCALES:
            raise FormatError(f"{self.name}: scale={scale!r} is not one of {', '.join(SCALES)}")
        options = {"scale": scale} if scale != "tensor" else {}
        super().__init__(**options, **self.set_rotation(rotate, group, signs))
        self.scale = scale

    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return (BLOCK * E2M1.bits + E4M3.bits) / BLOCK + (32 / dim if self.scale == "row" else 0)

    def bytes_for(self, rows: int, dim: int) -> int:
        return rows * dim * (BLOCK * E2M1.bits + E4M3.bits) // (8 * BLOCK) + 4 * (rows if self.scale == "row" else 1)

    def _encode(self, x: torch.Tensor) -> Packed:
        x = self.rotated(x.to(torch.float32))
        if self.scale == "row":
            amax = x.abs().amax(-1)
        else:
            amax = x.abs().amax() if x.numel() else torch.zeros((), device=x.device)
        tensor_scale = torch.where(amax > 0, amax / TENSOR_RANGE, torch.ones_like(amax))
        per_block = tensor_scale.unsqueeze(-1) if self.scale == "row" else tensor_scale
        blocks = x.reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
        block_scale = E4M3.round(blocks.abs().amax(-1) / E2M1.max_normal / per_block)
        divisor = (block_scale * per_block).unsqueeze(-1)
        scaled = torch.where(divisor > 0, blocks / torch.where(divisor > 0, divisor, 1.0), 0.0)
        fields = {"codes": pack_codes(E2M1.encode(scaled), E2M1.bits),
                  "scales": block_scale.to(torch.float8_e4m3fn).view(torch.uint8),
                  "tensor_scale": tensor_scale.contiguous()}
        return Packed(self.spec, tuple(x.shape), fields)

    def _decode(self, packed: Packed) -> torch.Tensor:
        values = E2M1.decode(unpack_codes(packed["codes"], E2M1.bits, BLOCK))
        tensor_scale = packed["tensor_scale"]
        per_block = tensor_scale.unsqueeze(-1) if self.scale == "row" else tensor_scale
        scale = packed["scales"].view(torch.float8_e4m3fn).to(torch.float32) * per_block
        y = (values * scale.unsqueeze(-1)).reshape(packed.shape)
        return self.unrotated(y)
