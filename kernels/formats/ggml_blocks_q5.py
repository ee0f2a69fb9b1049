"""llama.cpp's q5_0 and q5_1, byte-compatible with GGUF: q4_0 / q4_1 with a fifth bit per value.

llama-quantize falls back to them where a k-quant does not fit a row (q4_k -> q5_0, q5_k -> q5_1:
src/llama-quant.cpp, tensor_type_fallback), which is most of a k-quant mix on a model whose width is
not a multiple of 256, such as SmolLM2-135M's 576. Layout and rounding follow ggml-common.h and
quantize_row_q5_*_ref (ggml 0.25.3), in float32 step for step:

    q5_0: fp16 d, qh[4], qs[16]            x = (q - 16) d     d = max / -16 (max: signed value of largest |x|)
    q5_1: fp16 d, fp16 m, qh[4], qs[16]    x = q d + m        d = (max - min) / 31, m = min

Value j's low 4 bits are in qs as in q4_0 (byte j low nibble, byte j - 16 high nibble for j >= 16),
its fifth bit is bit j of the little-endian 32-bit qh.

Packed fields: d (and m) float16 [..., nblocks]; qh uint8 [..., nblocks, 4]; qs uint8 [..., nblocks, 16].
"""
from __future__ import annotations

import torch

from . import register
from .base import FormatError, Packed
from .block_struct import BlockStruct, Field
from .ggml_blocks import BLOCK, GGMLBlockFormat, first_equal, pack_nibbles, safe_reciprocal, unpack_nibbles

BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_fifth_bits(q: torch.Tensor) -> torch.Tensor:
    """[..., 32] codes 0..31 -> [..., 4] bytes of their bit 4, value j at bit j % 8 of byte j // 8."""
    bits = ((q >> 4) & 1).reshape(*q.shape[:-1], 4, 8)
    return (bits << BIT_SHIFTS.to(q.device)).sum(-1).to(torch.uint8)


def unpack_fifth_bits(qh: torch.Tensor) -> torch.Tensor:
    """[..., 4] bytes -> [..., 32] bits."""
    bits = (qh.unsqueeze(-1) >> BIT_SHIFTS.to(qh.device)) & 1
    return bits.reshape(*qh.shape[:-1], 32)


class Q5Block(GGMLBlockFormat):
    struct: BlockStruct
    zero_code = 16
    decode_flops_per_value = 2.0

    @property
    def block_bytes(self) -> int:
        return self.struct.block_bytes

    def codes_of(self, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """The 5-bit codes [..., nblocks, 32]."""
        return unpack_nibbles(fields["qs"]) | (unpack_fifth_bits(fields["qh"]) << 4)

    def count_scale_underflow(self, packed: Packed) -> int:
        d = packed["d"].float().abs()
        spread = (self.codes_of(packed.fields) != self.zero_code).any(-1)
        return int(((d < torch.finfo(torch.float16).tiny) & spread).sum())

    def packed_codes(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"qh": pack_fifth_bits(q), "qs": pack_nibbles(q & 0x0F)}

    def empty_packed(self, shape, device="cpu") -> Packed:
        self.check_dim(tuple(shape)[-1])
        return self.struct.empty(shape, self.spec, device)

    def to_gguf_bytes(self, packed: Packed) -> bytes:
        if packed.format != self.spec:
            raise FormatError(f"{self.spec}: cannot write GGUF blocks of data packed as {packed.format}")
        return self.struct.to_bytes(packed)

    def from_gguf_bytes(self, data: bytes, shape) -> Packed:
        return self.struct.from_bytes(data, shape, self.spec)


@register
class Q5_0(Q5Block):
    name = "q5_0"
    struct = BlockStruct(BLOCK, Field("d"), Field("qh", 4), Field("qs", 16))
    encode_flops_per_value = 5.0  # |x|, max, scale, offset, clamp

    def quantize_blocks(self, blocks):
        vmax = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))  # first value of largest magnitude
        vmax = torch.where(vmax == 0, torch.zeros_like(vmax), vmax)  # ggml starts from +0.0
        d = vmax / -16
        q = torch.trunc(blocks * safe_reciprocal(d) + 16.5).clamp_max(31).to(torch.uint8)
        return {"d": d.squeeze(-1).half(), **self.packed_codes(q)}

    def dequantize_blocks(self, fields):
        q = self.codes_of(fields).to(torch.float32) - 16
        return q * fields["d"].to(torch.float32).unsqueeze(-1)


@register
class Q5_1(Q5Block):
    name = "q5_1"
    struct = BlockStruct(BLOCK, Field("d"), Field("m"), Field("qh", 4), Field("qs", 16))
    scale_fields = ("d", "m")
    zero_code = 0
    encode_flops_per_value = 6.0  # min, max, shift, scale, offset

    def quantize_blocks(self, blocks):
        vmin = first_equal(blocks, blocks.amin(-1, keepdim=True))
        vmax = first_equal(blocks, blocks.amax(-1, keepdim=True))
        d = (vmax - vmin) / 31
        q = torch.trunc((blocks - vmin) * safe_reciprocal(d) + 0.5).to(torch.uint8)  # ggml does not clamp
        return {"d": d.squeeze(-1).half(), "m": vmin.squeeze(-1).half(), **self.packed_codes(q)}

    def dequantize_blocks(self, fields):
        q = self.codes_of(fields).to(torch.float32)
        return q * fields["d"].to(torch.float32).unsqueeze(-1) + fields["m"].to(torch.float32).unsqueeze(-1)
