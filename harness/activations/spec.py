"""The activation spec: which format each matmul's input gets, per role and layer, and the two
transforms that make activations easier to quantize.

Grammar: the weights spec's (harness/weights/roles.py: `target=format` items, later items win, a
bare format means `default=`, layers `@A-B+C`, `none` leaves a role's input unquantized), where a
role names the input of its matmul: q, k, v (all three read the attention norm's output), o, gate,
up (both read the ffn norm's output), down, and output (the output projection's input; `default`
leaves it out, as for weights). Formats: any registered format, applied to each token's row:
`int8`, `int4` (symmetric per token, absmax scale), `fp8_e4m3` (per-token scale), `mxfp4` (blocks of
32 along the row), ...; `f32` quantizes nothing but still takes the transforms. Two more items set
the transforms for the whole spec:

    smooth=ALPHA   SmoothQuant's migration with strength ALPHA in [0, 1] on every quantized input
    rotate=1       the QuaRot-style Hadamard rotation of the model (harness/activations/folding.py)

    "int8"    "default=int4,down=int8,rotate=1"    "int8,smooth=0.5"    "attn@0-3=fp8_e4m3,ffn=int8"
"""
from __future__ import annotations

from dataclasses import dataclass, field

from quantbench.kernels import formats
from quantbench.kernels.formats import Format, FormatError

from ..errors import UserError
from ..weights.roles import LAYER_ROLES, UNQUANTIZED, choose_formats, items_text, parse_items

ROLES = LAYER_ROLES + ("output",)
WHAT = "activation spec"


class ActSpecError(UserError):
    """An activation spec that does not parse, names an unknown role or layer, or does not fit an input."""


@dataclass
class MatmulInput:
    """The input of one matmul weight: its length, and the format each range [start, stop) of the
    weight's output rows takes it in (None: unquantized)."""

    length: int
    ranges: list[tuple[int, int, Format | None]] = field(default_factory=list)

    def formats(self) -> list[Format]:
        """The distinct formats the input is quantized in."""
        return list({fmt.spec: fmt for _, _, fmt in self.ranges if fmt is not None}.values())


class ActSpec:
    """A parsed activation spec; `assign(config)` gives each matmul's output rows the format of their input."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ActSpecError(f"{WHAT} must be a non-empty string, got {text!r}")
        parts = [part.strip() for part in text.split(",") if part.strip()]
        options = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if sep and key.strip() in ("smooth", "rotate"):
                options[key.strip()] = value.strip()
        self.smooth = _alpha(options["smooth"], text) if "smooth" in options else None
        self.rotate = _switch(options.get("rotate", "0"), text)
        quantized = ",".join(p for p in parts if p.partition("=")[0].strip() not in ("smooth", "rotate"))
        if not quantized:
            raise ActSpecError(f"{WHAT} {text!r} has no target=format item")
        self.items = parse_items(quantized, WHAT, ROLES, ActSpecError)
        self.text = items_text(quantized) + (f",smooth={self.smooth:g}" if self.smooth is not None else "") + (
            ",rotate=1" if self.rotate else "")
        self._formats = {it.format: _get_format(it.format, text) for it in self.items if it.format != UNQUANTIZED}

    def __repr__(self) -> str:
        return f"<ActSpec {self.text}>"

    @property
    def transforms(self) -> bool:
        return self.smooth is not None or self.rotate

    def assign(self, config) -> dict[str, MatmulInput]:
        """Matmul weight name -> its input, for every matmul with at least one quantized input."""
        chosen = choose_formats(self.items, config, self.text, WHAT, ActSpecError)
        inputs: dict[str, MatmulInput] = {}
        for sl, name in sorted(chosen.items(), key=lambda item: (item[0].tensor, item[0].start)):
            fmt = None if name == UNQUANTIZED else self._formats[name]
            if fmt is not None:
                try:
                    fmt.check_dim(sl.in_dim)
                except FormatError as exc:
                    raise ActSpecError(f"{WHAT} {self.text!r}: the input of {sl.label} ({sl.tensor}, length "
                                       f"{sl.in_dim}) cannot take {name}: {exc}") from None
            inputs.setdefault(sl.tensor, MatmulInput(sl.in_dim)).ranges.append((sl.start, sl.stop, fmt))
        inputs = {name: put for name, put in inputs.items() if put.formats()}
        if not inputs:
            raise ActSpecError(f"{WHAT} {self.text!r} quantizes no matmul input")
        return inputs


def bits_per_activation(inputs: dict[str, MatmulInput]) -> tuple[float, int]:
    """(bits per activation value, number of quantized inputs): each distinct format on a matmul's
    input counts once, weighted by the input's length (side data included; f32 counts 32)."""
    pairs = [(fmt.bits_per_value_for(put.length), put.length) for put in inputs.values() for fmt in put.formats()]
    return sum(b * n for b, n in pairs) / sum(n for _, n in pairs), len(pairs)


def _alpha(value: str, text: str) -> float:
    try:
        alpha = float(value)
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise ActSpecError(f"{WHAT} {text!r}: smooth={value!r} is not a migration strength between 0 and 1")
    return alpha


def _switch(value: str, text: str) -> bool:
    if value not in ("0", "1"):
        raise ActSpecError(f"{WHAT} {text!r}: rotate={value!r}: expected 0 or 1")
    return value == "1"


def _get_format(spec: str, text: str) -> Format:
    try:
        return formats.get(spec)
    except FormatError as exc:
        raise ActSpecError(f"{WHAT} {text!r}: {exc}") from None
