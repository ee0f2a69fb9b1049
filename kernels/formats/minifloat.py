"""Minifloat elements: the OCP 8-bit floats and the Microscaling (MX) element formats.

An element has a sign bit, `exp_bits` of biased exponent E and `man_bits` of mantissa M. Normal
values (E > 0) are (1 + M / 2^m) * 2^(E - bias), subnormals (E = 0) (M / 2^m) * 2^(1 - bias).
`round` is round-to-nearest, ties to even, saturating at +-max_normal (the formats without
infinities, and the saturating conversion for the ones with them). Codes are sign << (e + m) |
E << m | M, so an E4M3 code is the byte of torch's float8_e4m3fn and an E5M2 code that of
float8_e5m2 (the tests check both bit for bit).

Sources: OCP 8-bit Floating Point Specification (OFP8) rev 1.0 (E4M3: no infinities, the one NaN
pattern S.1111.111, max 448; E5M2: IEEE-like, max 57344); OCP Microscaling Formats (MX) v1.0,
section 5.3 (FP6 E3M2 max 28, FP6 E2M3 max 7.5, FP4 E2M1 max 6; none has infinities or NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Element:
    name: str
    exp_bits: int
    man_bits: int
    bias: int
    max_normal: float

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def emax(self) -> int:
        """Exponent of the largest normal value (MX: the shared scale is 2^(floor(log2 amax) - emax))."""
        return math.floor(math.log2(self.max_normal))

    @property
    def emin(self) -> int:
        return 1 - self.bias

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """float32 values rounded to this element's grid (ties to even), saturating."""
        a = x.abs().to(torch.float32)
        _, exponent = torch.frexp(a)  # a = f * 2^exponent, f in [0.5, 1): floor(log2 a) = exponent - 1
        e = torch.clamp(exponent - 1, min=self.emin)
        quantum = torch.ldexp(torch.ones_like(a), e - self.man_bits)
        q = torch.clamp(torch.round(a / quantum) * quantum, max=self.max_normal)
        return torch.where(x < 0, -q, q)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 codes of float32 values (rounded first)."""
        q = self.round(x)
        a = q.abs()
        _, exponent = torch.frexp(a)
        e = torch.clamp(exponent - 1, min=self.emin)
        normal = a >= 2.0 ** self.emin
        biased = torch.where(normal, e + self.bias, torch.zeros_like(e))
        frac = torch.ldexp(a, -e) - normal.to(a.dtype)  # in [0, 1): the mantissa's value
        mantissa = torch.round(frac * (1 << self.man_bits)).to(torch.int32)
        sign = (q < 0) | ((q == 0) & torch.signbit(x))
        code = (sign.to(torch.int32) << (self.exp_bits + self.man_bits)) | (biased << self.man_bits) | mantissa
        return code.to(torch.uint8)

    def table(self) -> torch.Tensor:
        """float32 value of every code (NaN for E4M3's NaN pattern, +-inf/NaN for E5M2's E = 31)."""
        codes = torch.arange(1 << self.bits)
        sign = torch.where((codes >> (self.exp_bits + self.man_bits)) & 1 == 1, -1.0, 1.0)
        biased = (codes >> self.man_bits) & ((1 << self.exp_bits) - 1)
        mantissa = (codes & ((1 << self.man_bits) - 1)).double() / (1 << self.man_bits)
        normal = biased > 0
        e = torch.where(normal, biased - self.bias, torch.full_like(biased, self.emin))
        value = sign * (mantissa + normal.double()) * torch.pow(2.0, e.double())
        value = torch.where(value.abs() > self.max_normal, torch.full_like(value, math.nan), value)
        if self.name == "e5m2":
            top = biased == (1 << self.exp_bits) - 1
            value = torch.where(top & (mantissa == 0), sign * math.inf, torch.where(top, math.nan, value))
        return value.float()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.table().to(codes.device)[codes.long()]


E4M3 = Element("e4m3", 4, 3, 7, 448.0)
E5M2 = Element("e5m2", 5, 2, 15, 57344.0)
E3M2 = Element("e3m2", 3, 2, 3, 28.0)
E2M3 = Element("e2m3", 2, 3, 1, 7.5)
E2M1 = Element("e2m1", 2, 1, 1, 6.0)
ELEMENTS = {e.name: e for e in (E4M3, E5M2, E3M2, E2M3, E2M1)}


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes of `bits` (4, 6 or 8) [..., n] -> bytes [..., n * bits / 8], little-endian:
    code i occupies bits i*b .. i*b + b - 1 of the row's bit string."""
    if bits == 8:
        return codes.to(torch.uint8)
    per = 8 // math.gcd(8, bits)  # codes per whole group of bytes: 2 (fp4) or 4 (fp6)
    grouped = codes.to(torch.int64).reshape(*codes.shape[:-1], codes.shape[-1] // per, per)
    word = (grouped << (bits * torch.arange(per, device=codes.device))).sum(-1)
    nbytes = per * bits // 8
    out = (word.unsqueeze(-1) >> (8 * torch.arange(nbytes, device=codes.device))) & 0xFF
    return out.reshape(*codes.shape[:-1], codes.shape[-1] * bits // 8).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of pack_codes: bytes [..., n * bits / 8] -> uint8 codes [..., n]."""
    if bits == 8:
        return packed
    per = 8 // math.gcd(8, bits)
    nbytes = per * bits // 8
    grouped = packed.to(torch.int64).reshape(*packed.shape[:-1], n // per, nbytes)
    word = (grouped << (8 * torch.arange(nbytes, device=packed.device))).sum(-1)
    codes = (word.unsqueeze(-1) >> (bits * torch.arange(per, device=packed.device))) & ((1 << bits) - 1)
    return codes.reshape(*packed.shape[:-1], n).to(torch.uint8)
