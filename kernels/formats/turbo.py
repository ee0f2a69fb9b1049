"""TurboQuant-style rotated Lloyd-Max codebook formats: turbo2, turbo3, turbo4, turbo4_mse.

Encode, for each group of g values (option `group`; default: the whole last dimension):
  1. n = ||x|| (summed in float64, so the order of the sum does not matter once cast), u = x / n;
  2. y = H (s * u) / sqrt(g): fixed seeded random signs s, orthonormal FWHT (kernels/formats/rotation.py).
     Whatever the input, y's coordinates are then close to N(0, 1/g);
  3. code_i = the Lloyd-Max cell of y_i for N(0, 1/g) (levels of N(0,1) scaled by 1/sqrt(g));
     torch.bucketize on the float32 boundaries: a value equal to a boundary takes the lower cell;
  4. stored norm = n / ||codebook[code]|| (norm correction: the reconstruction has the input's
     norm), or n without it; fp16.
Decode: x = s * H (norm * codebook[code]) / sqrt(g).

turbo4 is the inner-product quantizer Q_prod of TurboQuant (Zandieh et al. 2025, "TurboQuant:
Online Vector Quantization with Near-optimal Distortion Rate", arXiv 2504.19874, Algorithm 2): the
3-bit code above plus a 1-bit QJL sketch of the residual r = n*y - norm*codebook[code] (rotated
domain): store sign(S r) and ||r||, decode adds sqrt(pi/2)/g * ||r|| * S^T sign(S r), with S a
fixed seeded g x g standard Gaussian matrix. That term is an unbiased estimate of r, so inner
products with the reconstruction are unbiased, where the MSE code alone shrinks them.
turbo4_mse is plain 4-bit Lloyd-Max, the same-bits comparison.

Options (keyword-only, so an ablation is one flag): group, rotate (FWHT), signs, norm_correction,
levels (`gaussian`, the Lloyd-Max levels of N(0, 1); or the name of a trained table,
kernels/formats/codebook_tables.py: turbo3:levels=smollm2-k3-q2).

Packed fields (leading dimensions of x kept; G = dim / g groups per row):
  codes           uint8 [..., G, bits, g/8]  bit planes: bit k of value i's code is bit i%8 of byte i//8 of plane k
  norms           fp16  [..., G]
  qjl             uint8 [..., G, g/8]        turbo4: bit i%8 of byte i//8 is 1 where (S r)_i >= 0
  residual_norms  fp16  [..., G]             turbo4: ||r||
"""
from __future__ import annotations

import functools
import math

import torch

from quantbench.kernels.formats import lloyd_max
from quantbench.kernels.formats.codebook_tables import GAUSSIAN, boundaries_tensor, levels_tensor, trained_levels
from quantbench.kernels.formats.rotation import fwht, random_signs

from . import register
from .base import Format, FormatError, Packed, RotationGroups, check_power_of_two_group

QJL_SEED = 0x51A  # fixed: packed data stays decodable across runs and machines
FP16_MAX = 65504.0


@functools.lru_cache(maxsize=None)
def qjl_matrix(g: int) -> torch.Tensor:
    """The fixed g x g standard Gaussian projection S of turbo4 (float32, seeded)."""
    gen = torch.Generator().manual_seed(QJL_SEED + g)
    return torch.randn(g, g, generator=gen, dtype=torch.float32)


def qjl_scale(g: int) -> float:
    """sqrt(pi/2)/g: E|<s, r>| = sqrt(2/pi) ||r|| for a Gaussian row s, so this makes S^T sign(S r) unbiased."""
    return math.sqrt(math.pi / 2) / g


def pack_bits(bits01: torch.Tensor) -> torch.Tensor:
    """0/1 values [..., n] -> uint8 [..., n/8]; value i is bit i%8 of byte i//8."""
    weights = torch.tensor([1 << t for t in range(8)], dtype=torch.int32, device=bits01.device)
    grouped = bits01.to(torch.int32).reshape(*bits01.shape[:-1], bits01.shape[-1] // 8, 8)
    return (grouped * weights).sum(-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """uint8 [..., n/8] -> 0/1 int64 [..., n] (inverse of pack_bits)."""
    shifts = torch.arange(8, device=packed.device)
    return ((packed.to(torch.int64).unsqueeze(-1) >> shifts) & 1).reshape(*packed.shape[:-1], n)


def pack_bit_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes [..., g] -> bit planes uint8 [..., bits, g/8]."""
    shifts = torch.arange(bits, device=codes.device)
    return pack_bits((codes.to(torch.int64).unsqueeze(-2) >> shifts[:, None]) & 1)


def unpack_bit_planes(planes: torch.Tensor, g: int) -> torch.Tensor:
    """Bit planes uint8 [..., bits, g/8] -> int64 codes [..., g]."""
    shifts = torch.arange(planes.shape[-2], device=planes.device)
    return (unpack_bits(planes, g) << shifts[:, None]).sum(-2)


class TurboFormat(RotationGroups, Format):
    family = "codebook"
    bits = 3  # Lloyd-Max bits per value
    qjl = False
    decode_flops_per_value = 2.0  # codebook lookup, scale

    def __init__(self, *, group: int | None = None, rotate: bool = True, signs: bool = True,
                 norm_correction: bool = True, levels: str = GAUSSIAN):
        if group is not None:
            if isinstance(group, bool) or not isinstance(group, int):
                raise FormatError(f"{self.name}: group must be an integer, got {group!r}")
            check_power_of_two_group(self.name, group)
        if levels != GAUSSIAN:
            trained_levels(levels, self.bits)  # a missing or wrong table is an error now, not at encode
        given = {"group": group, "rotate": rotate, "signs": signs, "norm_correction": norm_correction,
                 "levels": levels}
        defaults = {"group": None, "rotate": True, "signs": True, "norm_correction": True, "levels": GAUSSIAN}
        super().__init__(**{k: v for k, v in given.items() if v != defaults[k]})  # equal formats, equal specs
        self.group = group
        self.rotate = bool(rotate)
        self.signs = bool(signs)
        self.norm_correction = bool(norm_correction)
        self.levels = levels
        self.block = group or 32
        # normalize (3), bucketize (binary search: bits), norm correction (2), pack (1)
        self.encode_flops_per_value = 6.0 + self.bits

    # ---- geometry and cost ----------------------------------------------------------------------
    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        g = self.group_for(dim)
        if self.qjl:
            return self.bits + 1 + 32 / g  # + QJL sign, two fp16 norms
        return self.bits + 16 / g

    def rotation_flops(self, dim: int) -> float:
        return math.log2(self.group_for(dim)) + 1 if self.rotate else 0.0

    def _nominal_dim(self) -> int:
        return self.group or 128

    # ---- constants the kernels share ------------------------------------------------------------
    def shared_tables(self) -> dict[str, int]:
        """A trained table of levels: 2^bits float32 values."""
        return {} if self.levels == GAUSSIAN else {f"levels={self.levels}": 32 << self.bits}

    def codebook(self, g: int) -> torch.Tensor:
        """float32 levels of the Lloyd-Max quantizer of N(0, 1/g), or of the trained table scaled alike."""
        if self.levels != GAUSSIAN:
            return levels_tensor(self.levels, self.bits, 1 / math.sqrt(g))
        return lloyd_max.codebook(self.bits, 1 / math.sqrt(g))

    def boundaries(self, g: int) -> torch.Tensor:
        if self.levels != GAUSSIAN:
            return boundaries_tensor(self.levels, self.bits, 1 / math.sqrt(g))
        return lloyd_max.boundaries(self.bits, 1 / math.sqrt(g))

    def sign_vector(self, g: int) -> torch.Tensor:
        """The ±1 signs applied before the FWHT (all ones with signs=0)."""
        return random_signs(g) if self.signs else torch.ones(g)

    # ---- encode / decode ------------------------------------------------------------------------
    def _forward(self, u: torch.Tensor, g: int) -> torch.Tensor:
        if self.signs:
            u = u * random_signs(g).to(u.device)
        return fwht(u) if self.rotate else u

    def _inverse(self, y: torch.Tensor, g: int) -> torch.Tensor:
        if self.rotate:
            y = fwht(y)
        return y * random_signs(g).to(y.device) if self.signs else y

    def _encode(self, x: torch.Tensor) -> Packed:
        dim = x.shape[-1]
        g = self.group_for(dim)
        xg = x.to(torch.float32).reshape(*x.shape[:-1], dim // g, g)
        norm = xg.double().square().sum(-1).sqrt()
        norm32 = norm.float()
        u = xg / torch.where(norm32 > 0, norm32, 1.0).unsqueeze(-1)
        y = self._forward(u, g)
        codes = torch.bucketize(y, self.boundaries(g).to(x.device))
        levels = self.codebook(g).to(x.device)[codes]
        stored = norm / levels.double().square().sum(-1).sqrt() if self.norm_correction else norm
        norms = self._to_fp16(stored, "norm")
        fields = {"codes": pack_bit_planes(codes, self.bits), "norms": norms}
        if self.qjl:
            residual = y * norm32.unsqueeze(-1) - levels * norms.float().unsqueeze(-1)
            projection = residual.double() @ qjl_matrix(g).to(x.device, torch.float64).T
            fields["qjl"] = pack_bits(projection >= 0)
            fields["residual_norms"] = self._to_fp16(residual.double().square().sum(-1).sqrt(), "residual norm")
        return Packed(self.spec, tuple(x.shape), fields)

    def _decode(self, packed: Packed) -> torch.Tensor:
        g = self.group_for(packed.shape[-1])
        codes = unpack_bit_planes(packed["codes"], g)
        rotated = self.codebook(g).to(codes.device)[codes] * packed["norms"].float().unsqueeze(-1)
        if self.qjl:
            signs = unpack_bits(packed["qjl"], g).float() * 2 - 1
            scale = qjl_scale(g) * packed["residual_norms"].float()
            rotated = rotated + scale.unsqueeze(-1) * (signs @ qjl_matrix(g).to(codes.device))
        return self._inverse(rotated, g).reshape(packed.shape)

    def _to_fp16(self, value: torch.Tensor, what: str) -> torch.Tensor:
        """float64 -> float32 -> fp16 (the kernels round the same two steps)."""
        if bool((value > FP16_MAX).any()):
            raise FormatError(f"{self.spec}: a group's {what} {float(value.max()):.4g} exceeds the fp16 range")
        return value.float().half()


@register
class Turbo2(TurboFormat):
    name = "turbo2"
    bits = 2


@register
class Turbo3(TurboFormat):
    name = "turbo3"
    bits = 3


@register
class Turbo4(TurboFormat):
    """3-bit Lloyd-Max + 1-bit QJL of the residual: unbiased inner products (TurboQuant Q_prod)."""

    name = "turbo4"
    bits = 3
    qjl = True

    def encode_flops(self, dim: int) -> float:
        return super().encode_flops(dim) + 2 * self.group_for(dim) + 4  # S r, residual and its norm

    def decode_flops(self, dim: int) -> float:
        return super().decode_flops(dim) + 2 * self.group_for(dim) + 1  # S^T sign(S r), add


@register
class Turbo4MSE(TurboFormat):
    name = "turbo4_mse"
    bits = 4
