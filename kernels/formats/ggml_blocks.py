"""llama.cpp's block formats q8_0, q4_0 and q4_1, byte-compatible with GGUF.

Layouts and rounding follow ggml (ggml-common.h block structs; quantize_row_*_ref and
dequantize_row_* in ggml-quants.c), in float32 step for step so encodings are bit-identical:

    q8_0: fp16 d, 32 x int8 q            x = q * d            d = amax / 127, q = roundf(x / d)
    q4_0: fp16 d, 16 bytes of nibbles    x = (q - 8) * d      d = max / -8 (max: signed value of largest |x|)
    q4_1: fp16 d, fp16 m, 16 nibbles     x = q * d + m        d = (max - min) / 15, m = min

Nibble byte j of a q4 block holds value j in its low and value j + 16 in its high nibble.

Packed fields (struct of arrays, leading dims of the input kept):
    d  float16 [..., nblocks]            (q4_1 also m, float16 [..., nblocks])
    qs int8 [..., nblocks, 32] (q8_0)  or  uint8 [..., nblocks, 16] nibble bytes (q4_0, q4_1)
`to_gguf_bytes` / `from_gguf_bytes` convert to and from GGUF's array of block structs.
"""
from __future__ import annotations

import math

import torch

from . import register
from .base import Format, FormatError, Packed

BLOCK = 32


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C's roundf in float32: ties away from zero (torch.round rounds ties to even)."""
    whole = torch.trunc(v)
    return whole + torch.trunc(2 * (v - whole))  # both steps are exact in float32


def safe_reciprocal(d: torch.Tensor) -> torch.Tensor:
    """ggml's `id = d ? 1.0f/d : 0.0f`."""
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))


def first_equal(blocks: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The first element of each block equal to `value`, as ggml's sequential strict-compare
    loops keep it (this fixes the sign when the extreme is zero: -0.0 == 0.0)."""
    idx = (blocks == value).to(torch.uint8).argmax(-1, keepdim=True)
    return blocks.gather(-1, idx)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """[..., 32] uint8 values 0..15 -> [..., 16] bytes: value j low nibble, value j+16 high."""
    return q[..., :16] | (q[..., 16:] << 4)


def unpack_nibbles(qs: torch.Tensor) -> torch.Tensor:
    return torch.cat((qs & 0x0F, qs >> 4), dim=-1)


class GGMLBlockFormat(Format):
    """Shared layout logic; subclasses give the per-block arithmetic."""

    family = "block"
    block = BLOCK
    scale_fields: tuple[str, ...] = ("d",)  # fp16 fields, in the order GGUF stores them
    code_bytes = 16  # bytes of codes per block
    code_dtype = torch.uint8

    def __init__(self):
        super().__init__()

    @property
    def block_bytes(self) -> int:
        return 2 * len(self.scale_fields) + self.code_bytes

    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return self.block_bytes * 8 / BLOCK

    # ---- encode / decode ---------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> Packed:
        return self.pack(x.to(torch.float32), self.spec)

    def pack(self, x: torch.Tensor, spec: str) -> Packed:
        """Quantize float32 `x` into a Packed value labelled `spec`."""
        fields = self.quantize_blocks(x.reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK))
        for name in self.scale_fields:
            if bool(torch.isinf(fields[name]).any()):
                raise FormatError(f"{spec}: values too large: a block's {name} overflows float16")
        return Packed(spec, tuple(x.shape), fields)

    zero_code = 0  # the code of a value equal to the block's zero point (a constant block's codes)

    def codes(self, qs: torch.Tensor) -> torch.Tensor:
        """Stored codes [..., nblocks, 32] of the qs field."""
        return unpack_nibbles(qs)

    def count_scale_underflow(self, packed: Packed) -> int:
        """Blocks whose fp16 scale d is zero or subnormal while their codes are not all the zero
        code (a constant block is exact at d = 0): the scale underflowed and the values are lost."""
        d = packed["d"].float().abs()
        spread = (self.codes(packed["qs"]) != self.zero_code).any(-1)
        return int(((d < torch.finfo(torch.float16).tiny) & spread).sum())

    def _decode(self, packed: Packed) -> torch.Tensor:
        return self.dequantize_blocks(packed.fields).reshape(packed.shape)

    def quantize_blocks(self, blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        """float32 [..., nblocks, 32] -> packed fields."""
        raise NotImplementedError

    def dequantize_blocks(self, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """packed fields -> float32 [..., nblocks, 32]."""
        raise NotImplementedError

    def empty_packed(self, shape, device="cpu") -> Packed:
        """Uninitialized packed storage for a tensor of `shape` (for kernels that write into it)."""
        shape = tuple(shape)
        self.check_dim(shape[-1])
        lead, nblocks = shape[:-1], shape[-1] // BLOCK
        fields = {name: torch.empty(*lead, nblocks, dtype=torch.float16, device=device)
                  for name in self.scale_fields}
        fields["qs"] = torch.empty(*lead, nblocks, self.code_bytes, dtype=self.code_dtype, device=device)
        return Packed(self.spec, shape, fields)

    # ---- GGUF bytes --------------------------------------------------------------------------
    def to_gguf_bytes(self, packed: Packed) -> bytes:
        """The GGUF array of block structs (little-endian) for `packed`."""
        if packed.format != self.spec:
            raise FormatError(f"{self.spec}: cannot write GGUF blocks of data packed as {packed.format}")
        return blocks_to_bytes(self, packed)

    def from_gguf_bytes(self, data: bytes, shape) -> Packed:
        """Packed value of GGUF block bytes holding a tensor of logical `shape`."""
        return bytes_to_packed(self, data, shape, self.spec)


def blocks_to_bytes(fmt: GGMLBlockFormat, packed: Packed) -> bytes:
    columns = [packed[name].contiguous().view(torch.uint8).reshape(-1, 2) for name in fmt.scale_fields]
    columns.append(packed["qs"].contiguous().view(torch.uint8).reshape(-1, fmt.code_bytes))
    return torch.cat(columns, dim=1).cpu().numpy().tobytes()


def bytes_to_packed(fmt: GGMLBlockFormat, data: bytes, shape, spec: str) -> Packed:
    shape = tuple(int(s) for s in shape)
    if not shape or shape[-1] == 0:
        raise FormatError(f"{spec}: expected a shape with a non-empty last dimension, got {shape}")
    fmt.check_dim(shape[-1])
    lead, nblocks = shape[:-1], shape[-1] // BLOCK
    count = math.prod(shape) // BLOCK
    if len(data) != count * fmt.block_bytes:
        raise FormatError(f"{spec}: {len(data)} bytes do not hold shape {shape} "
                          f"({count} blocks of {fmt.block_bytes} bytes = {count * fmt.block_bytes})")
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(count, fmt.block_bytes)
    fields = {}
    for i, name in enumerate(fmt.scale_fields):
        fields[name] = raw[:, 2 * i:2 * i + 2].contiguous().view(torch.float16).reshape(*lead, nblocks)
    codes = raw[:, 2 * len(fmt.scale_fields):].contiguous().view(fmt.code_dtype)
    fields["qs"] = codes.reshape(*lead, nblocks, fmt.code_bytes)
    return Packed(spec, shape, fields)


@register
class Q8_0(GGMLBlockFormat):
    name = "q8_0"
    code_bytes = 32
    code_dtype = torch.int8
    encode_flops_per_value = 4.0  # |x|, max, scale, round
    decode_flops_per_value = 1.0

    def codes(self, qs):
        return qs

    def quantize_blocks(self, blocks):
        amax = blocks.abs().amax(-1, keepdim=True)
        d = amax / 127
        q = round_half_away(blocks * safe_reciprocal(d))
        return {"d": d.squeeze(-1).half(), "qs": q.to(torch.int8)}

    def dequantize_blocks(self, fields):
        return fields["qs"].to(torch.float32) * fields["d"].to(torch.float32).unsqueeze(-1)


@register
class Q4_0(GGMLBlockFormat):
    name = "q4_0"
    encode_flops_per_value = 5.0  # |x|, max, scale, offset, clamp
    decode_flops_per_value = 2.0
    zero_code = 8

    def quantize_blocks(self, blocks):
        idx = blocks.abs().argmax(-1, keepdim=True)  # first index of the largest magnitude
        vmax = blocks.gather(-1, idx)
        vmax = torch.where(vmax == 0, torch.zeros_like(vmax), vmax)  # ggml starts from +0.0
        d = vmax / -8
        q = torch.trunc(blocks * safe_reciprocal(d) + 8.5).clamp_max(15).to(torch.uint8)
        return {"d": d.squeeze(-1).half(), "qs": pack_nibbles(q)}

    def dequantize_blocks(self, fields):
        q = unpack_nibbles(fields["qs"]).to(torch.float32) - 8
        return q * fields["d"].to(torch.float32).unsqueeze(-1)


@register
class Q4_1(GGMLBlockFormat):
    name = "q4_1"
    scale_fields = ("d", "m")
    encode_flops_per_value = 6.0  # min, max, shift, scale, offset, clamp
    decode_flops_per_value = 2.0

    def quantize_blocks(self, blocks):
        vmin = first_equal(blocks, blocks.amin(-1, keepdim=True))
        vmax = first_equal(blocks, blocks.amax(-1, keepdim=True))
        d = (vmax - vmin) / 15
        q = torch.trunc((blocks - vmin) * safe_reciprocal(d) + 0.5).clamp_max(15).to(torch.uint8)
        return {"d": d.squeeze(-1).half(), "m": vmin.squeeze(-1).half(), "qs": pack_nibbles(q)}

    def dequantize_blocks(self, fields):
        q = unpack_nibbles(fields["qs"]).to(torch.float32)
        d = fields["d"].to(torch.float32).unsqueeze(-1)
        return q * d + fields["m"].to(torch.float32).unsqueeze(-1)
