"""The OCP Microscaling formats mxfp8, mxfp6 and mxfp4: blocks of 32 elements sharing one E8M0
(power-of-two) scale.

Encode (OCP MX v1.0, section 6.3): per block, X = 2^(floor(log2(amax)) - emax), emax the exponent
of the element format's largest normal value (E4M3: 8, E3M2: 4, E2M3: 2, E2M1: 2), clamped to the
E8M0 range 2^-127 .. 2^127; each element is V / X rounded to nearest, ties to even, saturating at
the element's largest value (minifloat.py). An all-zero block gets X = 2^-127. Decode: element * X.

Options: `element` (mxfp6 only: e2m3, default, or e3m2); `rotate` (a randomized Hadamard rotation
of each `group` values first, as q4_0_rot: how MXFP4 is used with QuaRot-style models), `group`
(power of two 32..256; default the whole last dimension), `signs`.
Packed fields: `scales` uint8 [..., nblocks] (E8M0: the biased exponent), `codes` uint8
[..., nblocks, 32 * bits / 8] (minifloat.pack_codes). Bits per value: element bits + 8/32:
8.25, 6.25, 4.25.
"""
from __future__ import annotations

import torch

from . import register
from .base import Format, FormatError, Packed
from .minifloat import E2M1, E2M3, E3M2, E4M3, Element, pack_codes, unpack_codes
from .optional_rotation import OptionalRotation

BLOCK = 32
E8M0_BIAS = 127


class MXFormat(OptionalRotation, Format):
    family = "microscaling"
    block = BLOCK
    elements: dict[str, Element] = {}
    default_element = ""
    encode_flops_per_value = 6.0  # |x|, max, log2, scale, round, clamp
    decode_flops_per_value = 2.0  # table lookup, multiply

    def __init__(self, *, element: str = "", rotate: bool = False, group: int | None = None, signs: bool = True):
        element = element or self.default_element
        if element not in self.elements:
            raise FormatError(f"{self.name}: element={element!r} is not one of {', '.join(self.elements)}")
        options = {"element": element} if element != self.default_element else {}
        super().__init__(**options, **self.set_rotation(rotate, group, signs))
        self.element = self.elements[element]

    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return self.element.bits + 8 / BLOCK

    def _encode(self, x: torch.Tensor) -> Packed:
        x = self.rotated(x.to(torch.float32))
        blocks = x.reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
        amax = blocks.abs().amax(-1)
        _, exponent = torch.frexp(amax)  # floor(log2 amax) = exponent - 1 for amax > 0
        shared = torch.where(amax > 0, exponent - 1 - self.element.emax, torch.full_like(exponent, -E8M0_BIAS))
        shared = shared.clamp(-E8M0_BIAS, E8M0_BIAS)
        scaled = torch.ldexp(blocks, -shared.unsqueeze(-1))
        fields = {"scales": (shared + E8M0_BIAS).to(torch.uint8),
                  "codes": pack_codes(self.element.encode(scaled), self.element.bits)}
        return Packed(self.spec, tuple(x.shape), fields)

    def _decode(self, packed: Packed) -> torch.Tensor:
        codes = unpack_codes(packed["codes"], self.element.bits, BLOCK)
        scale = packed["scales"].to(torch.int32) - E8M0_BIAS
        y = torch.ldexp(self.element.decode(codes), scale.unsqueeze(-1)).reshape(packed.shape)
        return self.unrotated(y)


@register
class MXFP8(MXFormat):
    name = "mxfp8"
    elements = {"e4m3": E4M3}
    default_element = "e4m3"


@register
class MXFP6(MXFormat):
    name = "mxfp6"
    elements = {"e2m3": E2M3, "e3m2": E3M2}
    default_element = "e2m3"  # the better of the two on bell-shaped data (nmse 0.0008 vs 0.0029 on N(0,1))


@register
class MXFP4(MXFormat):
    name = "mxfp4"
    elements = {"e2m1": E2M1}
    default_element = "e2m1"
