"""The format contract: what every quantization format provides.

A format turns a float tensor into a `Packed` value (a few named tensors: codes, scales, norms)
and back. Packing works on the last dimension: the leading dimensions are rows, untouched.
Every format reports its exact storage cost in bits per value, side data included.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import FormatError


@dataclass
class Packed:
    """Encoded tensor: named storage tensors plus the logical shape they decode to.

    `fields` hold everything decode needs and nothing more, so `nbytes` is the true storage
    cost. Field layouts are documented by each format.
    """

    format: str
    shape: tuple[int, ...]
    fields: dict[str, torch.Tensor] = field(default_factory=dict)
    # blocks whose stored fp16 scale underflowed (zero or subnormal while the block was not): their
    # values decode to zero or to the block's minimum. llama.cpp stores the same bytes; the count
    # makes it visible (`formats` and `quality` warn).
    scale_underflow: int = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.fields.values())

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.fields[name]

    def to(self, device) -> "Packed":
        return Packed(self.format, self.shape, {k: v.to(device) for k, v in self.fields.items()},
                      self.scale_underflow)


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class Format:
    """Base class. Subclasses set `name` and implement `_encode` / `_decode` / `bits_per_value`.

    `options` holds the keyword options the format was built with (group size, rotation,
    norm correction...): `spec` writes them back as the string `get` accepts.
    """

    name: str = ""
    family: str = ""  # "float", "block", "codebook", "trellis"
    block: int = 1  # the last dimension must be a multiple of this
    encode_flops_per_value: float = 4.0  # traffic model: arithmetic per value, rotation excluded
    decode_flops_per_value: float = 1.0

    def __init__(self, **options):
        self.options = options

    @property
    def spec(self) -> str:
        extra = "".join(f":{k}={_option_text(v)}" for k, v in sorted(self.options.items()))
        return self.name + extra

    def __repr__(self) -> str:
        return f"<format {self.spec}: {self.bits_per_value_for(self._nominal_dim()):.4g} bits/value>"

    # ---- public API -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Packed:
        self.check_input(x)
        packed = self._encode(x)
        packed.scale_underflow = self.count_scale_underflow(packed)
        return packed

    def count_scale_underflow(self, packed: Packed) -> int:
        """Blocks of `packed` whose stored scale underflowed (0 for formats without block scales)."""
        return 0

    def decode(self, packed: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if packed.format != self.spec:
            raise FormatError(f"{self.spec}: cannot decode data packed as {packed.format}")
        return self._decode(packed).to(dtype)

    def roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), dtype=torch.float32)

    @property
    def bits_per_value(self) -> float:
        """Exact storage bits per value for this format's nominal row length."""
        return self.bits_per_value_for(self._nominal_dim())

    def bits_per_value_for(self, dim: int) -> float:
        """Exact storage bits per value for rows of length `dim` (side data included)."""
        raise NotImplementedError

    def shared_tables(self) -> dict[str, int]:
        """{name: bits} of the tables a decoder must hold that are trained on a model's own data
        (kernels/formats/codebook_tables.py), stored once however many rows use them. Tables computed
        from the format's definition (Lloyd-Max levels of N(0, 1), trellis tables trained on Gaussian
        data from a fixed seed) are rebuilt from the spec and cost nothing."""
        return {}

    def bytes_for(self, rows: int, dim: int) -> int:
        """Exact storage bytes of `rows` rows of length `dim`."""
        bits = self.bits_per_value_for(dim) * rows * dim
        return int(round(bits / 8))

    def encode_flops(self, dim: int) -> float:
        return self.encode_flops_per_value + self.rotation_flops(dim)

    def decode_flops(self, dim: int) -> float:
        return self.decode_flops_per_value + self.rotation_flops(dim)

    def rotation_flops(self, dim: int) -> float:
        """FLOPs per value of the format's rotation (0 for unrotated formats)."""
        return 0.0

    def check_dim(self, dim: int) -> None:
        if dim % self.block:
            raise FormatError(
                f"{self.spec}: last dimension {dim} is not a multiple of its block size {self.block}"
            )

    def holds(self, dim: int) -> bool:
        """Whether rows of length `dim` fit the format (`check_dim` accepts them)."""
        try:
            self.check_dim(dim)
        except FormatError:
            return False
        return True

    def check_side_data(self, packed: Packed) -> Packed:
        """Every fp16 field finite: a kernel that writes side data (a scale, a norm) that overflowed
        float16 raises here, as the torch encoder does. Returns `packed`."""
        for name, t in packed.fields.items():
            if t.dtype == torch.float16 and not bool(torch.isfinite(t).all()):
                raise FormatError(f"{self.spec}: values too large: a block's {name} overflows float16")
        return packed

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise FormatError(f"{self.spec}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise FormatError(f"{self.spec}: expected a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 1 or x.shape[-1] == 0:
            raise FormatError(f"{self.spec}: expected a tensor with a non-empty last dimension, "
                              f"got shape {tuple(x.shape)}")
        self.check_dim(x.shape[-1])
        if not bool(torch.isfinite(x).all()):
            raise FormatError(f"{self.spec}: input contains NaN or Inf")

    # ---- for subclasses ----------------------------------------------------------------------
    def _nominal_dim(self) -> int:
        return max(self.block, 32)

    def _encode(self, x: torch.Tensor) -> Packed:
        raise NotImplementedError

    def _decode(self, packed: Packed) -> torch.Tensor:
        raise NotImplementedError


def _option_text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def check_power_of_two_group(fmt_name: str, group: int) -> None:
    if group < 32 or group > 256 or group & (group - 1):
        raise FormatError(
            f"{fmt_name}: group size {group} is not a power of two between 32 and 256"
        )


class RotationGroups:
    """Mixin for formats that rotate groups of `self.group` values along the last dimension
    (None: the whole last dimension, which must then be a power of two from 32 to 256)."""

    group: int | None

    def group_for(self, dim: int) -> int:
        return self.group or dim

    def check_dim(self, dim: int) -> None:
        if self.group is None:
            check_power_of_two_group(f"{self.spec} (rotation group = the whole last dimension)", dim)
        elif dim % self.group:
            raise FormatError(f"{self.spec}: last dimension {dim} is not a multiple of the group size {self.group}")
