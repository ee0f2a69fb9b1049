"""q8_0_rot and q4_0_rot: a randomized Hadamard rotation of each group, then the llama.cpp block.

This is what llama.cpp does for quantized KV caches: rotating spreads an outlier channel's
energy over the whole group, so the block scales (set by each block's largest value) fit the
bulk of the values better. Decode undoes the rotation after the block decode.

Options: `group` (power of two, 32..256; default: the whole last dimension, which must then be
such a power of two), `signs` (random sign flips before the Hadamard transform, default on).
Packed fields and GGUF bytes are those of the unrotated format, holding the rotated values.
"""
from __future__ import annotations

import math

import torch

from quantbench.kernels.formats.rotation import rotate, unrotate

from . import register
from .base import Format, FormatError, Packed, RotationGroups, check_power_of_two_group
from .ggml_blocks import BLOCK, Q4_0, Q8_0, GGMLBlockFormat, blocks_to_bytes, bytes_to_packed


class RotatedBlockFormat(RotationGroups, Format):
    family = "block"
    inner_format: type[GGMLBlockFormat] = GGMLBlockFormat

    def __init__(self, *, group: int | None = None, signs: bool = True):
        if group is not None:
            check_power_of_two_group(self.name, group)
        options = {}  # only non-defaults, so equal formats have equal specs
        if group is not None:
            options["group"] = group
        if not signs:
            options["signs"] = False
        super().__init__(**options)
        self.group = group
        self.signs = signs
        self.block = group or BLOCK
        self.inner = self.inner_format()
        self.encode_flops_per_value = self.inner.encode_flops_per_value
        self.decode_flops_per_value = self.inner.decode_flops_per_value

    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return self.inner.bits_per_value_for(dim)

    def rotation_flops(self, dim: int) -> float:
        return math.log2(self.group_for(dim)) + 1

    def _encode(self, x: torch.Tensor) -> Packed:
        rotated = rotate(x.to(torch.float32), self.group_for(x.shape[-1]), self.signs)
        return self.inner.pack(rotated, self.spec)

    def _decode(self, packed: Packed) -> torch.Tensor:
        rotated = self.inner.dequantize_blocks(packed.fields).reshape(packed.shape)
        return unrotate(rotated, self.group_for(packed.shape[-1]), self.signs)

    def empty_packed(self, shape, device="cpu") -> Packed:
        """Uninitialized packed storage for a tensor of `shape` (for kernels that write into it)."""
        shape = tuple(shape)
        self.check_dim(shape[-1])
        return Packed(self.spec, shape, self.inner.empty_packed(shape, device).fields)

    def count_scale_underflow(self, packed: Packed) -> int:
        return self.inner.count_scale_underflow(packed)

    def to_gguf_bytes(self, packed: Packed) -> bytes:
        """GGUF blocks of the rotated values (decode them with this format to undo the rotation)."""
        if packed.format != self.spec:
            raise FormatError(f"{self.spec}: cannot write GGUF blocks of data packed as {packed.format}")
        return blocks_to_bytes(self.inner, packed)

    def from_gguf_bytes(self, data: bytes, shape) -> Packed:
        shape = tuple(int(s) for s in shape)
        if shape:
            self.check_dim(shape[-1])
        return bytes_to_packed(self.inner, data, shape, self.spec)


@register
class Q8_0Rot(RotatedBlockFormat):
    name = "q8_0_rot"
    inner_format = Q8_0


@register
class Q4_0Rot(RotatedBlockFormat):
    name = "q4_0_rot"
    inner_format = Q4_0
