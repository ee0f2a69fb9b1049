"""Tensor roles and the weights spec: which format each weight row range gets.

Roles: q, k, v (row slices of layers.i.wqkv), o (wo), gate, up (row halves of w13), down (w2),
embeddings (tok_embeddings), output (the output projection; the same tensor as the embeddings
when they are tied, as in SmolLM2).

Spec grammar (items separated by commas, applied left to right, a later item wins):

    spec    := item ("," item)*
    item    := target "=" format
    target  := ("default" | "attn" | "ffn" | role) ["@" layers]
    layers  := range ("+" range)*        range := N | A-B   (0-based, inclusive)
    format  := a registered format with its options (q4_0, turbo3:group=64) | "none" (unquantized)

`default` (and `attn` = q,k,v,o, `ffn` = gate,up,down) cover the per-layer roles only: the
embeddings and output stay unquantized unless named. For a tied model `embeddings` and `output`
name the same tensor and must not get different formats. A bare format ("q4_0") means
"default=q4_0". A spec may start with one of llama.cpp's k-quant mixes (q4_k_m, q5_k_m, q3_k_m: the
types llama-quantize gives each tensor, weights/kquant_mixes.py), which its later items override.
Quantization runs along the input dimension (the last one), so row slices of a fused tensor can
take different formats; the input dimension must suit every format used on it.
"""
from __future__ import annotations

from dataclasses import dataclass

from quantbench.kernels import formats
from quantbench.kernels.formats import Format, FormatError

from ..errors import UserError
from .kquant_mixes import mix_spec, split_mix

LAYER_ROLES = ("q", "k", "v", "o", "gate", "up", "down")
ROLES = LAYER_ROLES + ("embeddings", "output")
GROUPS = {"default": LAYER_ROLES, "attn": ("q", "k", "v", "o"), "ffn": ("gate", "up", "down")}
UNQUANTIZED = "none"


class WeightSpecError(UserError):
    """A weights spec that does not parse, names an unknown role or layer, or does not fit a tensor."""


@dataclass(frozen=True)
class Slice:
    """One role's rows of one weight tensor: rows [start, stop) of `tensor` ([out, in])."""

    role: str
    layer: int | None
    tensor: str
    start: int
    stop: int
    in_dim: int

    @property
    def numel(self) -> int:
        return (self.stop - self.start) * self.in_dim

    @property
    def label(self) -> str:
        return self.role if self.layer is None else f"{self.role}@{self.layer}"


def role_slices(config) -> list[Slice]:
    """Every quantizable row range of the model, in forward order."""
    c = config
    q, kv, hidden = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.hidden_dim
    out = [Slice("embeddings", None, "tok_embeddings", 0, c.vocab_size, c.dim)]
    for i in range(c.n_layers):
        p = f"layers.{i}."
        out += [Slice("q", i, p + "wqkv", 0, q, c.dim), Slice("k", i, p + "wqkv", q, q + kv, c.dim),
                Slice("v", i, p + "wqkv", q + kv, q + 2 * kv, c.dim), Slice("o", i, p + "wo", 0, c.dim, q),
                Slice("gate", i, p + "w13", 0, hidden, c.dim), Slice("up", i, p + "w13", hidden, 2 * hidden, c.dim),
                Slice("down", i, p + "w2", 0, c.dim, hidden)]
    if not c.tie_embeddings:
        out.append(Slice("output", None, "output", 0, c.vocab_size, c.dim))
    return out


@dataclass(frozen=True)
class Item:
    roles: tuple[str, ...]
    layers: frozenset[int] | None  # None: every layer
    format: str  # format spec text, or UNQUANTIZED


class WeightSpec:
    """A parsed weights spec; `assign(config)` gives each role slice its format (or None)."""

    def __init__(self, text: str):
        self.mix, rest = split_mix(text)  # a llama.cpp k-quant mix first: "q4_k_m,down@0=q8_0" (kquant_mixes.py)
        self.items = parse_items(rest) if self.mix is None or rest else []
        self.text = ",".join(part for part in (self.mix, rest and items_text(rest)) if part)
        self._formats = {it.format: _get_format(it.format, text) for it in self.items if it.format != UNQUANTIZED}

    def __repr__(self) -> str:
        return f"<WeightSpec {self.text}>"

    def assign(self, config) -> list[tuple[Slice, Format]]:
        """(slice, format) for every slice that gets quantized, checked against the tensor shapes."""
        items = parse_items(mix_spec(self.mix, config)) + self.items if self.mix else self.items
        chosen = choose_formats(items, config, self.text)
        if config.tie_embeddings:
            tied = {it.format for it in self.items if {"embeddings", "output"} & set(it.roles)}
            if len(tied) > 1:
                raise WeightSpecError(f"weights spec {self.text!r}: embeddings and output are one tied tensor "
                                      f"in this model; they cannot take different formats ({', '.join(sorted(tied))})")
        out = []
        for sl, name in chosen.items():
            if name == UNQUANTIZED:
                continue
            fmt = self._formats.get(name) or _get_format(name, self.text)
            try:
                fmt.check_dim(sl.in_dim)
            except FormatError as exc:
                raise FormatError(f"weights spec {self.text!r}: {sl.label} ({sl.tensor} rows {sl.start}-{sl.stop - 1}, "
                                  f"input dimension {sl.in_dim}) cannot take {name}: {exc}") from None
            out.append((sl, fmt))
        return out


def bits_summary(assigned: list[tuple[Slice, Format]], extra_bits: dict[Slice, float] | None = None) -> dict:
    """Bits per weight over the quantized slices, by element count (side data included; `extra_bits`
    adds per-slice storage such as an input-channel scale vector). Also says what it covers."""
    extra_bits = extra_bits or {}
    total = sum(sl.numel for sl, _ in assigned)
    bits = sum(fmt.bits_per_value_for(sl.in_dim) * sl.numel + extra_bits.get(sl, 0.0) for sl, fmt in assigned)
    roles = {sl.role for sl, _ in assigned}
    return {"bits_per_weight": bits / total if total else 0.0, "quantized_weights": total,
            "embeddings_included": bool(roles & {"embeddings", "output"})}


def _covers(item: Item, sl: Slice, config) -> bool:
    names = {"embeddings", "output"} if sl.role == "embeddings" and config.tie_embeddings else {sl.role}
    if not names & set(item.roles):
        return False
    return item.layers is None or (sl.layer is not None and sl.layer in item.layers)


def parse_items(text: str, what: str = "weights spec", roles: tuple[str, ...] = ROLES,
                error: type[UserError] = WeightSpecError) -> list[Item]:
    """The target=format items of a spec in this grammar (the weights spec's, or another spec's
    that names `what` in its errors and allows only `roles`)."""
    if not isinstance(text, str) or not text.strip():
        raise error(f"{what} must be a non-empty string, got {text!r}")
    items = [_parse_item(part.strip(), text, what, roles, error) for part in text.split(",") if part.strip()]
    if not items:
        raise error(f"{what} {text!r} has no item")
    return items


def items_text(text: str) -> str:
    """The spec written back with every target explicit ("q4_0,k=q8_0" -> "default=q4_0,k=q8_0")."""
    return ",".join(_item_text(part.strip()) for part in text.split(",") if part.strip())


def choose_formats(items: list[Item], config, text: str, what: str = "weights spec",
                   error: type[UserError] = WeightSpecError) -> dict[Slice, str]:
    """Each role slice the items cover, with the format text of the last item covering it."""
    for item in items:
        bad = sorted(n for n in (item.layers or ()) if n >= config.n_layers)
        if bad:
            raise error(f"{what} {text!r}: layer {bad[0]} does not exist "
                        f"(the model has layers 0-{config.n_layers - 1})")
    chosen: dict[Slice, str] = {}
    for sl in role_slices(config):
        for item in items:
            if _covers(item, sl, config):
                chosen[sl] = item.format
    return chosen


def _parse_item(part: str, text: str, what: str, allowed: tuple[str, ...], error: type[UserError]) -> Item:
    target, fmt = _split_item(part)
    if target is None:
        if fmt.split(":")[0] not in (*formats.names(), UNQUANTIZED):
            raise error(f"{what} {text!r}: item {part!r} is neither target=format nor a format")
        target = "default"
    if not fmt:
        raise error(f"{what} {text!r}: item {part!r} has no format")
    name, at, layers_text = target.partition("@")
    if name in GROUPS:
        roles = GROUPS[name]
    elif name in allowed:
        roles = (name,)
    else:
        raise error(f"{what} {text!r}: unknown role {name!r} "
                    f"(roles: {', '.join(allowed)}; groups: {', '.join(GROUPS)})")
    layers = None
    if at:
        if name in ("embeddings", "output"):
            raise error(f"{what} {text!r}: {name} is not a per-layer role; it takes no @layers")
        layers = _parse_layers(layers_text, text, what, error)
    return Item(roles, layers, fmt)


def _parse_layers(layers_text: str, text: str, what: str, error: type[UserError]) -> frozenset[int]:
    out: set[int] = set()
    for rng in layers_text.split("+"):
        lo, dash, hi = rng.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise error(f"{what} {text!r}: layer range {rng!r} is not N or A-B") from None
        if a < 0 or b < a:
            raise error(f"{what} {text!r}: layer range {rng!r} is empty or negative")
        out.update(range(a, b + 1))
    return frozenset(out)


def _split_item(part: str) -> tuple[str | None, str]:
    """(target, format); target None for a bare format (its options hold the only '=' signs)."""
    target, sep, fmt = part.partition("=")
    if not sep or ":" in target:
        return None, part.strip()
    return target.strip(), fmt.strip()


def _item_text(part: str) -> str:
    target, fmt = _split_item(part)
    return f"{target or 'default'}={fmt}"


def _get_format(spec: str, text: str) -> Format:
    try:
        return formats.get(spec)
    except FormatError as exc:
        raise WeightSpecError(f"weights spec {text!r}: {exc}") from None
