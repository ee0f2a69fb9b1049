"""How llama.cpp's k-quant super-blocks lay out their 256 codes and sub-block scales
(ggml-common.h block_q2_K .. block_q6_K; ggml-quants.c quantize_row_*_ref / dequantize_row_*).

Codes, by value index v = 0..255 of a super-block:
    2-bit planes (q2_k, q3_k low bits, q6_k high bits): byte 32 h + l, bits 2 s, holds v = 128 h + 32 s + l
    nibbles (q4_k, q5_k): byte 32 c + l, low nibble v = 64 c + l, high nibble v = 64 c + 32 + l
    q6_k low nibbles: byte 64 h + 32 a + l, low nibble v = 128 h + 32 a + l, high nibble v + 64
    high-bit plane (q3_k hmask, q5_k qh): byte l, bit t, holds v = 32 t + l
Scales:
    q4_k, q5_k: 8 pairs (scale, min) of 6 bits in 12 bytes (`pack_scale_min_pairs`)
    q3_k: 16 signed 6-bit scales, stored + 32, in 12 bytes (`pack_q3_scales`)
Every function works on the trailing dimensions and keeps the leading ones.
"""
from __future__ import annotations

import torch

SUPER_BLOCK = 256


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """ggml's nearest_int of float32 values: the low mantissa bits of v + 1.5 * 2^23 (ties to even)."""
    shifted = v.to(torch.float32) + 12582912.0
    return (shifted.view(torch.int32) & 0x7FFFFF) - 0x400000


def _shifts(count: int, step: int, device) -> torch.Tensor:
    return torch.arange(0, count * step, step, dtype=torch.uint8, device=device)


def unpack_crumbs(planes: torch.Tensor) -> torch.Tensor:
    """[..., 64] bytes -> [..., 256] 2-bit values."""
    halves = planes.reshape(*planes.shape[:-1], 2, 1, 32)
    return ((halves >> _shifts(4, 2, planes.device).reshape(4, 1)) & 3).reshape(*planes.shape[:-1], SUPER_BLOCK)


def pack_crumbs(values: torch.Tensor) -> torch.Tensor:
    """[..., 256] values 0..3 -> [..., 64] bytes."""
    v = values.to(torch.uint8).reshape(*values.shape[:-1], 2, 4, 32)
    return (v[..., 0, :] | (v[..., 1, :] << 2) | (v[..., 2, :] << 4) | (v[..., 3, :] << 6)).flatten(-2)


def unpack_nibble_pairs(qs: torch.Tensor) -> torch.Tensor:
    """[..., 128] bytes -> [..., 256] 4-bit values (q4_k / q5_k order)."""
    chunks = qs.reshape(*qs.shape[:-1], 4, 1, 32)
    return torch.cat((chunks & 0x0F, chunks >> 4), dim=-2).reshape(*qs.shape[:-1], SUPER_BLOCK)


def pack_nibble_pairs(values: torch.Tensor) -> torch.Tensor:
    """[..., 256] values 0..15 -> [..., 128] bytes."""
    v = values.to(torch.uint8).reshape(*values.shape[:-1], 4, 2, 32)
    return (v[..., 0, :] | (v[..., 1, :] << 4)).flatten(-2)


def unpack_q6_low(ql: torch.Tensor) -> torch.Tensor:
    """[..., 128] bytes -> [..., 256] low nibbles of q6_k."""
    halves = ql.reshape(*ql.shape[:-1], 2, 2, 32)
    return torch.cat((halves & 0x0F, halves >> 4), dim=-2).reshape(*ql.shape[:-1], SUPER_BLOCK)


def pack_q6_low(values: torch.Tensor) -> torch.Tensor:
    """[..., 256] values (their low nibbles are packed) -> [..., 128] bytes."""
    v = (values.to(torch.uint8) & 0x0F).reshape(*values.shape[:-1], 2, 4, 32)
    return (v[..., 0:2, :] | (v[..., 2:4, :] << 4)).flatten(-3)


def unpack_high_bits(plane: torch.Tensor) -> torch.Tensor:
    """[..., 32] bytes -> [..., 256] bits."""
    bits = (plane.unsqueeze(-2) >> _shifts(8, 1, plane.device).reshape(8, 1)) & 1
    return bits.reshape(*plane.shape[:-1], SUPER_BLOCK)


def pack_high_bits(bits: torch.Tensor) -> torch.Tensor:
    """[..., 256] bits -> [..., 32] bytes."""
    b = bits.to(torch.uint8).reshape(*bits.shape[:-1], 8, 32)
    out = torch.zeros_like(b[..., 0, :])
    for t in range(8):
        out |= b[..., t, :] << t
    return out


def pack_scale_min_pairs(scales: torch.Tensor, mins: torch.Tensor) -> torch.Tensor:
    """[..., 8] 6-bit scales and mins -> [..., 12] bytes: bytes 0-3 scales 0-3, bytes 4-7 mins 0-3,
    bytes 8-11 the low nibbles of scale and min 4-7, their top 2 bits in bits 6-7 of bytes 0-7."""
    s, m = scales.to(torch.uint8), mins.to(torch.uint8)
    first = s[..., :4] | ((s[..., 4:] >> 4) << 6)
    second = m[..., :4] | ((m[..., 4:] >> 4) << 6)
    third = (s[..., 4:] & 0x0F) | ((m[..., 4:] & 0x0F) << 4)
    return torch.cat((first, second, third), dim=-1)


def unpack_scale_min_pairs(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., 12] bytes -> (scales, mins) [..., 8] uint8, 0..63."""
    first, second, third = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    scales = torch.cat((first & 63, (third & 0x0F) | ((first >> 6) << 4)), dim=-1)
    mins = torch.cat((second & 63, (third >> 4) | ((second >> 6) << 4)), dim=-1)
    return scales, mins


def pack_q3_scales(codes: torch.Tensor) -> torch.Tensor:
    """[..., 16] 6-bit codes -> [..., 12] bytes: low nibbles of codes 0-7 and 8-15 in bytes 0-7,
    the top 2 bits of code j in byte 8 + j % 4, bits 2 (j // 4)."""
    c = codes.to(torch.uint8)
    low = (c[..., :8] & 0x0F) | ((c[..., 8:] & 0x0F) << 4)
    top = (c >> 4).reshape(*c.shape[:-1], 4, 4)
    high = top[..., 0, :] | (top[..., 1, :] << 2) | (top[..., 2, :] << 4) | (top[..., 3, :] << 6)
    return torch.cat((low, high), dim=-1)


def unpack_q3_scales(packed: torch.Tensor) -> torch.Tensor:
    """[..., 12] bytes -> [..., 16] signed scales (code - 32), int32."""
    low = torch.cat((packed[..., :8] & 0x0F, packed[..., :8] >> 4), dim=-1)
    high = (packed[..., 8:12].unsqueeze(-2) >> _shifts(4, 2, packed.device).reshape(4, 1)) & 3
    return (low | (high.reshape(*packed.shape[:-1], 16) << 4)).to(torch.int32) - 32
