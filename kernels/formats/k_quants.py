"""llama.cpp's k-quants q2_k, q3_k, q4_k, q5_k and q6_k, byte-compatible with GGUF.

A super-block holds 256 values (QK_K) in sub-blocks of 16 or 32, each with its own scale (and min),
stored as small integers times fp16 super-block scales (ggml-common.h, ggml 0.25.3):

    type  struct (GGUF order)                           sub-blocks            value                       bits
    q2_k  scales[16] qs[64] d dmin                      16 x 16, 4-bit s, m   d s q - dmin m, q 0..3     2.625
    q3_k  hmask[32] qs[64] scales[12] d                 16 x 16, 6-bit s      d (s - 32) q, q -4..3      3.4375
    q4_k  d dmin scales[12] qs[128]                     8 x 32, 6-bit s, m    d s q - dmin m, q 0..15    4.5
    q5_k  d dmin scales[12] qh[32] qs[128]              8 x 32, 6-bit s, m    d s q - dmin m, q 0..31    5.5
    q6_k  ql[128] qh[64] scales[16] d                   16 x 16, int8 s       d s q, q -32..31           6.5625

Encoding is ggml's reference quantizer (quantize_row_*_ref, which llama-quantize runs without an
importance matrix): each sub-block's scale search (formats/k_quant_search.py), the sub-block scales
quantized against the largest one, the super-block scales rounded to fp16, then every value
re-rounded with the stored scales. Bit layouts: formats/k_quant_layout.py.

Packed fields are the struct's fields, leading dimensions kept: fp16 d (and dmin) [..., nblocks],
byte arrays [..., nblocks, count]. `to_gguf_bytes` / `from_gguf_bytes` convert to and from GGUF.
Rows must be a multiple of 256 values long; a KV cache with head_dim 64 or 128 cannot use them.
"""
from __future__ import annotations

import numpy as np
import torch

from . import register
from .base import Format, FormatError, Packed
from .block_struct import BlockStruct, Field
from .k_quant_layout import (
    SUPER_BLOCK,
    nearest_int,
    pack_crumbs,
    pack_high_bits,
    pack_nibble_pairs,
    pack_q3_scales,
    pack_q6_low,
    pack_scale_min_pairs,
    unpack_crumbs,
    unpack_high_bits,
    unpack_nibble_pairs,
    unpack_q3_scales,
    unpack_q6_low,
    unpack_scale_min_pairs,
)
from .k_quant_search import (
    WEIGHT_ABS,
    WEIGHT_RMS_PLUS_ABS,
    q3_scale_search,
    scale_min_search,
    signed_scale_search,
)


class SuperBlockFormat(Format):
    """Layout, bytes and checks shared by the k-quants; subclasses give the block arithmetic."""

    family = "block"
    block = SUPER_BLOCK
    struct: BlockStruct
    super_scales: tuple[str, ...] = ("d",)

    def __init__(self):
        super().__init__()

    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return self.struct.block_bytes * 8 / SUPER_BLOCK

    def check_dim(self, dim: int) -> None:
        if dim % SUPER_BLOCK:
            raise FormatError(f"{self.spec}: last dimension {dim} is not a multiple of 256, the length of "
                              f"its super-blocks (llama.cpp's QK_K)")

    def _encode(self, x: torch.Tensor) -> Packed:
        blocks = x.detach().to("cpu", torch.float32).reshape(-1, SUPER_BLOCK).contiguous()
        fields = self.quantize_super_blocks(blocks)
        for name in self.super_scales:
            if bool(torch.isinf(fields[name]).any()):
                raise FormatError(f"{self.spec}: values too large: a block's {name} overflows float16")
        lead = (*x.shape[:-1], x.shape[-1] // SUPER_BLOCK)
        shaped = {f.name: fields[f.name].reshape(*lead, *(() if f.count is None else (f.count,))).to(x.device)
                  for f in self.struct.fields}
        return Packed(self.spec, tuple(x.shape), shaped)

    def _decode(self, packed: Packed) -> torch.Tensor:
        return self.dequantize_super_blocks(packed.fields).reshape(packed.shape)

    def count_scale_underflow(self, packed: Packed) -> int:
        """Super-blocks whose fp16 d is zero while a sub-block scale is not: their values are lost.
        (A subnormal d is usual here, not a loss: weights of magnitude 1e-2 give d around 1e-5.)"""
        return int(((packed["d"] == 0) & self.has_sub_scale(packed.fields)).sum())

    def quantize_super_blocks(self, blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        """float32 [n, 256] -> the struct's fields, [n] or [n, count]."""
        raise NotImplementedError

    def dequantize_super_blocks(self, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """fields [..., nblocks(, count)] -> float32 [..., nblocks, 256]."""
        raise NotImplementedError

    def has_sub_scale(self, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """bool [..., nblocks]: some sub-block scale of the super-block is not zero."""
        raise NotImplementedError

    def empty_packed(self, shape, device="cpu") -> Packed:
        """Uninitialized packed storage for a tensor of `shape` (for kernels that write into it)."""
        self.check_dim(tuple(shape)[-1])
        return self.struct.empty(shape, self.spec, device)

    def to_gguf_bytes(self, packed: Packed) -> bytes:
        """The GGUF array of block structs (little-endian) for `packed`."""
        if packed.format != self.spec:
            raise FormatError(f"{self.spec}: cannot write GGUF blocks of data packed as {packed.format}")
        return self.struct.to_bytes(packed)

    def from_gguf_bytes(self, data: bytes, shape) -> Packed:
        """Packed value of GGUF block bytes holding a tensor of logical `shape`."""
        shape = tuple(int(s) for s in shape)
        if shape:
            self.check_dim(shape[-1])
        return self.struct.from_bytes(data, shape, self.spec)


def _positive_max(values: torch.Tensor) -> torch.Tensor:
    """max(0, values...) along the last dimension, as ggml's loops from 0 with `>` keep it (+0.0 if none)."""
    top = values.amax(-1)
    return torch.where(top > 0, top, torch.zeros_like(top))


def _largest_magnitude(values: torch.Tensor) -> torch.Tensor:
    """The first value of largest magnitude along the last dimension, with its sign."""
    return values.gather(-1, values.abs().argmax(-1, keepdim=True)).squeeze(-1)


def _over(numerator: float, t: torch.Tensor) -> torch.Tensor:
    """numerator / t in one float32 rounding (`number / tensor` is t.reciprocal() * number in torch: two)."""
    return torch.full_like(t, numerator) / t


def _inverse_or_zero(numerator: float, top: torch.Tensor) -> torch.Tensor:
    """numerator / top where top > 0, else 0."""
    positive = top > 0
    return torch.where(positive, _over(numerator, torch.where(positive, top, torch.ones_like(top))), 0.0)


def _as_int8(v: torch.Tensor) -> torch.Tensor:
    """C's conversion of an int to int8_t (wraps)."""
    return ((v + 128) & 0xFF) - 128


def _requantized(x, levels, d, lo, hi, offset=None, shift=0):
    """The levels of x [n, subs, len] re-rounded with the stored sub-block scales d [n, subs] (and
    offsets) where d is not 0: nearest_int((x + offset) / d) clamped to lo..hi, plus shift; where d
    is 0, ggml keeps the search's levels."""
    d = d.unsqueeze(-1)
    nonzero = d != 0
    shifted = x if offset is None else x + offset.unsqueeze(-1)
    fresh = nearest_int(shifted / torch.where(nonzero, d, torch.ones_like(d))).clamp(lo, hi) + shift
    return torch.where(nonzero, fresh, levels.to(torch.int32))


def _search_scale_min(sub: torch.Tensor, weight_kind: int, nmax: int, rmin: float, rdelta: float, nstep: int,
                      use_mad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = sub.reshape(-1, sub.shape[-1]).numpy()
    scales = np.empty(rows.shape[0], np.float32)
    mins = np.empty(rows.shape[0], np.float32)
    levels = np.empty(rows.shape, np.uint8)
    scale_min_search(rows, weight_kind, nmax, np.float32(rmin), np.float32(rdelta), nstep, use_mad,
                     scales, mins, levels)
    shape = sub.shape[:-1]
    return (torch.from_numpy(scales).reshape(shape), torch.from_numpy(mins).reshape(shape),
            torch.from_numpy(levels).reshape(sub.shape))


def _search_signed(search, sub: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = sub.reshape(-1, sub.shape[-1]).numpy()
    scales = np.empty(rows.shape[0], np.float32)
    levels = np.empty(rows.shape, np.int8)
    search(rows, nmax, scales, levels)
    return torch.from_numpy(scales).reshape(sub.shape[:-1]), torch.from_numpy(levels).reshape(sub.shape)


@register
class Q2_K(SuperBlockFormat):
    name = "q2_k"
    struct = BlockStruct(SUPER_BLOCK, Field("scales", 16), Field("qs", 64), Field("d"), Field("dmin"))
    super_scales = ("d", "dmin")
    encode_flops_per_value = 200.0  # 16 scale-min grids tried per sub-block
    decode_flops_per_value = 2.0

    def quantize_super_blocks(self, blocks):
        sub = blocks.reshape(-1, 16, 16)
        scales, mins, levels = _search_scale_min(sub, WEIGHT_ABS, 3, -0.5, 0.1, 15, True)
        max_scale, max_min = _positive_max(scales), _positive_max(mins)
        scale_codes = nearest_int(_inverse_or_zero(15.0, max_scale).unsqueeze(-1) * scales) & 0xFF
        min_codes = nearest_int(_inverse_or_zero(15.0, max_min).unsqueeze(-1) * mins)
        packed_scales = (scale_codes | (min_codes << 4)) & 0xFF
        d = torch.where(max_scale > 0, max_scale / 15, 0.0).half()
        dmin = torch.where(max_min > 0, max_min / 15, 0.0).half()
        sub_d = d.float().unsqueeze(-1) * (packed_scales & 0x0F).float()
        sub_m = dmin.float().unsqueeze(-1) * (packed_scales >> 4).float()
        levels = _requantized(sub, levels, sub_d, 0, 3, offset=sub_m)
        return {"scales": packed_scales.to(torch.uint8), "qs": pack_crumbs(levels.reshape(-1, SUPER_BLOCK)),
                "d": d, "dmin": dmin}

    def dequantize_super_blocks(self, fields):
        scales = fields["scales"]
        sub_d = fields["d"].float().unsqueeze(-1) * (scales & 0x0F).float()
        sub_m = fields["dmin"].float().unsqueeze(-1) * (scales >> 4).float()
        q = unpack_crumbs(fields["qs"]).float().reshape(*scales.shape, 16)
        return (sub_d.unsqueeze(-1) * q - sub_m.unsqueeze(-1)).flatten(-2)

    def has_sub_scale(self, fields):
        return (fields["scales"] & 0x0F).ne(0).any(-1)


@register
class Q3_K(SuperBlockFormat):
    name = "q3_k"
    struct = BlockStruct(SUPER_BLOCK, Field("hmask", 32), Field("qs", 64), Field("scales", 12), Field("d"))
    encode_flops_per_value = 60.0  # one grid, then up to 5 sweeps of single-value moves
    decode_flops_per_value = 2.0

    def quantize_super_blocks(self, blocks):
        sub = blocks.reshape(-1, 16, 16)
        scales, levels = _search_signed(q3_scale_search, sub, 4)
        max_scale = _largest_magnitude(scales)
        nonzero = max_scale != 0
        iscale = _over(-32.0, torch.where(nonzero, max_scale, torch.ones_like(max_scale)))
        codes = _as_int8(nearest_int(iscale.unsqueeze(-1) * scales)).clamp(-32, 31) + 32
        codes = torch.where(nonzero.unsqueeze(-1), codes, 0)
        d = torch.where(nonzero, _over(1.0, iscale), 0.0).half()
        sub_d = d.float().unsqueeze(-1) * (codes - 32).float()
        levels = _requantized(sub, levels, sub_d, -4, 3, shift=4).reshape(-1, SUPER_BLOCK)
        high = levels > 3
        return {"hmask": pack_high_bits(high), "qs": pack_crumbs(torch.where(high, levels - 4, levels)),
                "scales": pack_q3_scales(codes), "d": d}

    def dequantize_super_blocks(self, fields):
        sub_d = fields["d"].float().unsqueeze(-1) * unpack_q3_scales(fields["scales"]).float()
        low = unpack_crumbs(fields["qs"]).to(torch.int32)
        q = low - torch.where(unpack_high_bits(fields["hmask"]).bool(), 0, 4)
        return (sub_d.unsqueeze(-1) * q.float().reshape(*sub_d.shape, 16)).flatten(-2)

    def has_sub_scale(self, fields):
        return unpack_q3_scales(fields["scales"]).remainder(32).ne(0).any(-1)


class ScaleMinFormat(SuperBlockFormat):
    """q4_k and q5_k: 8 sub-blocks of 32, 6-bit scale and min each; q5_k adds a fifth bit per value."""

    super_scales = ("d", "dmin")
    nmax = 15
    rmin, nstep = -1.0, 20
    decode_flops_per_value = 2.0

    def quantize_super_blocks(self, blocks):
        sub = blocks.reshape(-1, 8, 32)
        scales, mins, levels = _search_scale_min(sub, WEIGHT_RMS_PLUS_ABS, self.nmax, self.rmin, 0.1, self.nstep,
                                                 False)
        max_scale, max_min = _positive_max(scales), _positive_max(mins)
        scale_codes = (nearest_int(_inverse_or_zero(63.0, max_scale).unsqueeze(-1) * scales) & 0xFF).clamp_max(63)
        min_codes = (nearest_int(_inverse_or_zero(63.0, max_min).unsqueeze(-1) * mins) & 0xFF).clamp_max(63)
        d, dmin = (max_scale / 63).half(), (max_min / 63).half()
        sub_d = d.float().unsqueeze(-1) * scale_codes.float()
        sub_m = dmin.float().unsqueeze(-1) * min_codes.float()
        levels = _requantized(sub, levels, sub_d, 0, self.nmax, offset=sub_m).reshape(-1, SUPER_BLOCK)
        fields = {"d": d, "dmin": dmin, "scales": pack_scale_min_pairs(scale_codes, min_codes),
                  "qs": pack_nibble_pairs(levels & 0x0F)}
        if self.nmax > 15:
            fields["qh"] = pack_high_bits(levels >> 4)
        return fields

    def dequantize_super_blocks(self, fields):
        scales, mins = unpack_scale_min_pairs(fields["scales"])
        sub_d = fields["d"].float().unsqueeze(-1) * scales.float()
        sub_m = fields["dmin"].float().unsqueeze(-1) * mins.float()
        q = unpack_nibble_pairs(fields["qs"])
        if "qh" in fields:
            q = q | (unpack_high_bits(fields["qh"]) << 4)
        q = q.float().reshape(*sub_d.shape, 32)
        return (sub_d.unsqueeze(-1) * q - sub_m.unsqueeze(-1)).flatten(-2)

    def has_sub_scale(self, fields):
        return unpack_scale_min_pairs(fields["scales"])[0].ne(0).any(-1)


@register
class Q4_K(ScaleMinFormat):
    name = "q4_k"
    struct = BlockStruct(SUPER_BLOCK, Field("d"), Field("dmin"), Field("scales", 12), Field("qs", 128))
    encode_flops_per_value = 250.0  # 21 scale-min grids tried per sub-block


@register
class Q5_K(ScaleMinFormat):
    name = "q5_k"
    struct = BlockStruct(SUPER_BLOCK, Field("d"), Field("dmin"), Field("scales", 12), Field("qh", 32),
                         Field("qs", 128))
    nmax = 31
    rmin, nstep = -0.5, 15
    encode_flops_per_value = 190.0  # 16 scale-min grids tried per sub-block


@register
class Q6_K(SuperBlockFormat):
    name = "q6_k"
    struct = BlockStruct(SUPER_BLOCK, Field("ql", 128), Field("qh", 64), Field("scales", 16, torch.int8), Field("d"))
    encode_flops_per_value = 120.0  # 19 grid sizes tried per sub-block
    decode_flops_per_value = 2.0

    def quantize_super_blocks(self, blocks):
        sub = blocks.reshape(-1, 16, 16)
        scales, levels = _search_signed(signed_scale_search, sub, 32)
        max_scale = _largest_magnitude(scales)
        empty = max_scale.abs() < 1e-15  # ggml writes an all-zero block
        iscale = _over(-128.0, torch.where(empty, torch.ones_like(max_scale), max_scale))
        d = torch.where(empty, 0.0, _over(1.0, iscale)).half()
        codes = _as_int8(nearest_int(iscale.unsqueeze(-1) * scales).clamp_max(127))
        codes = torch.where(empty.unsqueeze(-1), 0, codes)
        sub_d = d.float().unsqueeze(-1) * codes.float()
        levels = _requantized(sub, levels, sub_d, -32, 31, shift=32)
        levels = torch.where(empty.reshape(-1, 1, 1), 0, levels).reshape(-1, SUPER_BLOCK)
        return {"ql": pack_q6_low(levels), "qh": pack_crumbs(levels >> 4), "scales": codes.to(torch.int8), "d": d}

    def dequantize_super_blocks(self, fields):
        q = (unpack_q6_low(fields["ql"]) | (unpack_crumbs(fields["qh"]) << 4)).to(torch.int32) - 32
        sub_d = fields["d"].float().unsqueeze(-1) * fields["scales"].float()
        return (sub_d.unsqueeze(-1) * q.float().reshape(*sub_d.shape, 16)).flatten(-2)

    def has_sub_scale(self, fields):
        return fields["scales"].ne(0).any(-1)
