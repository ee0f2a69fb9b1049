"""The formats' own quantizers, split the way GPTQ needs them: per group of input columns.

GPTQ quantizes one input column at a time and pushes each column's error onto the columns not yet
quantized, so it needs a format's quantizer as "side data fixed per group, then each value to the
nearest representable point". For every format this module supports:

  * `to_domain` maps weights [rows, in] into the domain the format quantizes in. For rotated formats
    (turbo*, q*_rot) that is the per-group rotation M (signs, then the orthonormal FWHT): W' = W M.
    M is orthogonal, so X W^T = (X M)(W M)^T and the Hessian maps to M^T H M; GPTQ then runs in the
    rotated domain, where the format's codes live, and the result packs natively.
  * `group_params` fixes a group's side data from the group's current values exactly as the format's
    own encoder would (block scale d and min m for q8_0/q4_0/q4_1; the group norm, norm-corrected
    from the round-to-nearest codes, for turbo), rounded to its stored fp16 value.
  * `quantize_column` rounds one column to the nearest value representable with that side data
    (for Lloyd-Max codebooks the midpoint boundaries give the nearest level).
  * `pack` turns the chosen codes and side data into the format's Packed value, so decoding it
    gives exactly the matrix GPTQ computed.

turbo4 (its QJL residual sketch is not a per-value quantizer) and the trellis formats have no
per-column quantizer: GPTQ refuses them (RTN works for every format).
"""
from __future__ import annotations

import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import Format, FormatError, Packed
from quantbench.kernels.formats.ggml_blocks import (
    BLOCK,
    Q4_0,
    Q4_1,
    Q8_0,
    GGMLBlockFormat,
    pack_nibbles,
    round_half_away,
)
from quantbench.kernels.formats.rotated_blocks import RotatedBlockFormat
from quantbench.kernels.formats.turbo import TurboFormat, pack_bit_planes

# block layout -> (lowest, highest rounded value, offset to the stored code); q4_1 rounds (w - m) / d
BLOCK_COLUMN_RANGES = {Q8_0: (-127, 127, 0), Q4_0: (-8, 7, 8), Q4_1: (0, 15, 0)}


class InnerQuantizer:
    group: int  # input columns that share side data

    def __init__(self, fmt: Format, in_dim: int):
        fmt.check_dim(in_dim)
        self.fmt = fmt
        self.in_dim = in_dim

    def rotation(self) -> torch.Tensor | None:
        """The [in, in] orthogonal M with W' = W M (None: the identity)."""
        return None

    def to_domain(self, w: torch.Tensor) -> torch.Tensor:
        m = self.rotation()
        return w if m is None else w @ m.to(w.dtype)

    def group_params(self, wg: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def quantize_column(self, w: torch.Tensor, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes int64 [rows], values float32 [rows])."""
        raise NotImplementedError

    def pack(self, codes: torch.Tensor, params: list[dict[str, torch.Tensor]]) -> Packed:
        raise NotImplementedError


class BlockQuantizer(InnerQuantizer):
    """q8_0, q4_0, q4_1 (and the rotated q8_0_rot / q4_0_rot): 32-value blocks, fp16 d (and m)."""

    group = BLOCK

    def __init__(self, fmt: Format, in_dim: int):
        super().__init__(fmt, in_dim)
        self.block_format: GGMLBlockFormat = fmt.inner if isinstance(fmt, RotatedBlockFormat) else fmt

    def rotation(self):
        if not isinstance(self.fmt, RotatedBlockFormat):
            return None
        from quantbench.kernels.formats.rotation import rotate
        return rotate(torch.eye(self.in_dim), self.fmt.group_for(self.in_dim), self.fmt.signs)

    def group_params(self, wg):
        fields = self.block_format.quantize_blocks(wg.float().unsqueeze(-2))
        return {k: v.squeeze(-1) for k, v in fields.items() if k != "qs"}

    def quantize_column(self, w, params):
        d = params["d"].float()
        inv = torch.where(d == 0, torch.zeros_like(d), 1 / torch.where(d == 0, torch.ones_like(d), d))
        low, high, offset = BLOCK_COLUMN_RANGES[type(self.block_format)]
        m = params["m"].float() if "m" in params else 0.0
        q = round_half_away((w - m) * inv).clamp(low, high)
        return (q + offset).long(), q * d + m

    def pack(self, codes, params):
        rows = codes.shape[0]
        blocks = codes.reshape(rows, -1, BLOCK)
        fields = {k: torch.stack([p[k] for p in params], dim=-1) for k in params[0]}
        fields["qs"] = (blocks.to(torch.int8) if isinstance(self.block_format, Q8_0)
                        else pack_nibbles(blocks.to(torch.uint8)))
        return Packed(self.fmt.spec, (rows, self.in_dim), fields)


class TurboQuantizer(InnerQuantizer):
    """turbo2, turbo3, turbo4_mse: per-group norm (fp16) times a Lloyd-Max level, rotated domain."""

    def __init__(self, fmt: TurboFormat, in_dim: int):
        super().__init__(fmt, in_dim)
        self.group = fmt.group_for(in_dim)
        self.levels = fmt.codebook(self.group)
        self.bounds = fmt.boundaries(self.group)

    def rotation(self):
        g = self.group
        block = self.fmt._forward(torch.eye(g), g)  # row i: the rotated unit vector e_i, so W' = W M
        return torch.block_diag(*[block] * (self.in_dim // g))

    def group_params(self, wg):
        norm = wg.double().square().sum(-1).sqrt()
        safe = torch.where(norm > 0, norm, torch.ones_like(norm)).float()
        if self.fmt.norm_correction:
            codes = torch.bucketize(wg.float() / safe.unsqueeze(-1), self.bounds)
            norm = norm / self.levels[codes].double().square().sum(-1).sqrt()
        return {"norms": self.fmt._to_fp16(norm, "norm")}

    def quantize_column(self, w, params):
        norm = params["norms"].float()
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        codes = torch.bucketize(w.float() / safe, self.bounds)
        return codes, self.levels[codes] * norm

    def pack(self, codes, params):
        rows = codes.shape[0]
        grouped = codes.reshape(rows, -1, self.group)
        fields = {"codes": pack_bit_planes(grouped, self.fmt.bits),
                  "norms": torch.stack([p["norms"] for p in params], dim=-1)}
        return Packed(self.fmt.spec, (rows, self.in_dim), fields)


def quantizer_class(fmt: Format) -> type[InnerQuantizer] | None:
    """The per-column quantizer that reproduces the format's encoder, None where there is none."""
    if isinstance(fmt, TurboFormat) and not fmt.qjl:
        return TurboQuantizer
    block = fmt.inner if isinstance(fmt, RotatedBlockFormat) else fmt
    if type(block) in BLOCK_COLUMN_RANGES:
        return BlockQuantizer
    return None


def inner_quantizer(fmt: Format, in_dim: int) -> InnerQuantizer:
    cls = quantizer_class(fmt)
    if cls is None:
        supported = [n for n in formats.names() if quantizer_class(formats.get(n))]
        raise FormatError(f"gptq: format {fmt.spec} has no per-value inner quantizer (gptq supports "
                          f"{', '.join(supported)}; use --method rtn for the others)")
    return cls(fmt, in_dim)
