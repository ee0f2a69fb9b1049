"""KV policies: which cache format each layer's keys and values are stored in.

Spec grammar (comma-separated items; later items win):
    turbo3                          every layer, K and V
    k=q8_0,v=turbo3                 asymmetric
    turbo3,first4=q8_0,last4=q8_0   layer-adaptive (LA-1); also layers0-3=..., layer7=...
    k=turbo3,v=turbo3,v.last8=q8_0  an override for one side only (k.first4=..., v.layers2-5=...)
Format specs keep their own options: "turbo3:group=64,last8=q8_0".
Techniques (harness/model/kv_techniques) are items too, for every layer of a side or both:
    q4_0_rot,sinks4=q8_0,window32=f16,v.alpha=1.02
A name of harness/model/named_policies.py (best:3.5) stands for its policy.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

from quantbench.kernels import formats
from quantbench.kernels.formats import Format, FormatError
from quantbench.kernels.formats.klt import klt_format
from quantbench.kernels.formats.token_groups import token_group_format

from .errors import ModelError
from .kv_techniques import Technique, parse_technique, technique_key
from .named_policies import expand_named

SIDES = ("k", "v")
_RANGE = re.compile(r"^(?:(?P<side>[kv])\.)?(?:first(?P<first>\d+)|last(?P<last>\d+)|"
                    r"layers?(?P<a>\d+)(?:-(?P<b>\d+))?)$")
_CONTINUES = re.compile(r"^(?:[kv]\.)?(?:first|last|layers?)\d[\w-]*=")  # a layer item of the policy before it


class KVPolicyError(ModelError):
    """A KV policy spec that does not parse or does not fit the model."""


def _overlay(ctx: int, base: str, held: list[tuple[range, str]]) -> list[tuple[int, int, str]]:
    """Positions 0..ctx-1 as (start, end, format) segments: `base`, then each held range over it."""
    segments = [(0, ctx, base)]
    for positions, spec in held:
        lo, hi = positions.start, positions.stop
        cut = []
        for start, end, fmt in segments:
            cut += [(start, min(end, lo), fmt), (max(start, lo), min(end, hi), spec), (max(start, hi), end, fmt)]
        segments = [(start, end, fmt) for start, end, fmt in cut if start < end]
    return segments


@functools.lru_cache(maxsize=None)
def _format_bits(spec: str, head_dim: int) -> float:
    return cache_format(spec).bits_per_value_for(head_dim)


@functools.lru_cache(maxsize=None)
def _format_tables(spec: str) -> tuple[tuple[str, int], ...]:
    return tuple(getattr(cache_format(spec), "shared_tables", dict)().items())


def cache_format(spec: str):
    """The format a policy names: a token-axis format (kivi2, kivi4: kernels/formats/token_groups.py)
    or a registered per-row one."""
    special = token_group_format(spec) or klt_format(spec)
    if special is not None:
        return special
    try:
        return formats.get(spec)
    except FormatError as exc:
        raise FormatError(f"{exc}; a KV cache also takes the token-axis formats kivi2, kivi4 and the "
                          "calibrated klt<bits>") from None


@dataclass(frozen=True)
class KVPolicy:
    k_formats: tuple[str, ...]  # canonical format spec per layer
    v_formats: tuple[str, ...]
    techniques: tuple[Technique, ...] = ()  # in the order of the spec

    def techniques_for(self, side: str) -> list[Technique]:
        """The side's techniques, innermost (first to wrap the store) first."""
        return sorted((t for t in self.techniques if side in t.sides), key=lambda t: t.order)

    @property
    def n_layers(self) -> int:
        return len(self.k_formats)

    def format_for(self, layer: int, side: str) -> str:
        if side not in SIDES:
            raise KVPolicyError(f"side must be 'k' or 'v', got {side!r}")
        if not 0 <= layer < self.n_layers:
            raise KVPolicyError(f"layer {layer} is outside 0..{self.n_layers - 1}")
        return (self.k_formats if side == "k" else self.v_formats)[layer]

    def format(self, layer: int, side: str) -> Format:
        return cache_format(self.format_for(layer, side))

    @property
    def spec(self) -> str:
        items = [t.item for t in self.techniques]
        if self.k_formats == self.v_formats:
            return ",".join([_side_spec(self.k_formats, ""), *items])
        k_base, k_over = _side_items(self.k_formats, "k.")
        v_base, v_over = _side_items(self.v_formats, "v.")
        return ",".join([f"k={k_base}", f"v={v_base}", *k_over, *v_over, *items])

    def __str__(self) -> str:
        return self.spec

    def store_bits(self, layer: int, side: str, head_dim: int, ctx: int | None = None) -> float:
        """Storage bits per value of one layer's side over ctx positions: its format's, with the
        positions a technique holds in another format counted in that one, plus the techniques'
        own side data. Without techniques ctx does not matter; with them it must be given."""
        base = self.format_for(layer, side)
        techniques = self.techniques_for(side)
        grouped = token_group_format(base)
        tables = getattr(cache_format(base), "table_bits", None)
        if not techniques and tables is None and (grouped is None or ctx is None):
            return cache_format(base).bits_per_value_for(head_dim)
        if ctx is None or ctx <= 0:
            raise KVPolicyError(f"KV policy {self.spec}: its bits per value depend on the context; give a "
                                "positive ctx")
        held = [h for h in (t.held(ctx) for t in techniques) if h is not None]
        if grouped is not None:  # the tokens of an incomplete last group wait in fp16
            held.insert(0, (range(ctx // grouped.group * grouped.group, ctx), "f16"))
        stored = sum((end - start) * _format_bits(spec, head_dim) for start, end, spec in _overlay(ctx, base, held))
        extra = sum(t.extra_bits(head_dim, ctx) for t in techniques) + (tables(head_dim, ctx) if tables else 0)
        return stored / ctx + extra

    def bits_per_value(self, head_dim: int, ctx: int | None = None, kv_heads: int = 1) -> float:
        """Mean storage bits per cached value, over layers and K/V (at context ctx: store_bits), plus
        the tables trained on a model that its formats name (`shared_tables`), each stored once
        for the whole cache: spread over layers x 2 x kv_heads x head_dim x ctx values. Without
        kv_heads a table is spread over one KV head, an upper bound."""
        bits = [self.store_bits(layer, side, head_dim, ctx) for layer in range(self.n_layers) for side in SIDES]
        tables = self.shared_tables(ctx)
        if tables and (ctx is None or ctx <= 0):
            raise KVPolicyError(f"KV policy {self.spec}: its trained tables ({', '.join(tables)}) are counted over "
                                "the context; give a positive ctx")
        shared = sum(tables.values()) / (len(bits) * kv_heads * head_dim * ctx) if tables else 0.0
        return sum(bits) / len(bits) + shared

    def shared_tables(self, ctx: int | None = None) -> dict[str, int]:
        """{name: bits} of the trained tables of every format the policy stores values in (the
        layers' formats and those of positions a technique holds at ctx), each once."""
        specs = set(self.k_formats) | set(self.v_formats)
        if ctx:
            specs |= {held[1] for held in (t.held(ctx) for t in self.techniques) if held is not None}
        tables: dict[str, int] = {}
        for spec in sorted(specs):
            tables.update(_format_tables(spec))
        return tables

    def kv_bytes_per_token(self, config, ctx: int | None = None) -> float:
        """Cache bytes one token costs on average over ctx positions, all layers, K and V (side data
        and trained tables included; exact for a policy without techniques, whatever ctx)."""
        bits = self.bits_per_value(config.head_dim, ctx, config.n_kv_heads)
        return bits * 2 * config.n_layers * config.n_kv_heads * config.head_dim / 8


def parse_kv_policy(kv: str | None = None, k: str | None = None, v: str | None = None, *,
                    n_layers: int) -> KVPolicy:
    """Build a policy from `kv` (both sides) and/or `k` / `v` (one side each; they override kv)."""
    if not isinstance(n_layers, int) or n_layers <= 0:
        raise KVPolicyError(f"n_layers must be a positive integer, got {n_layers!r}")
    if kv is None and (k is None or v is None):
        if k is None and v is None:
            raise KVPolicyError("no KV format given: pass kv, or both k and v")
        raise KVPolicyError(f"only {'k' if v is None else 'v'} given: pass both k and v, or kv for both")
    sides, techniques = {"k": None, "v": None}, []
    if kv is not None:
        sides, techniques = _parse_items(expand_named(kv), n_layers, allow_sides=True)
    for side, text in (("k", k), ("v", v)):
        if text is not None:
            one_side, own = _parse_items(text, n_layers, allow_sides=False)
            if own:
                raise KVPolicyError(f"KV policy {text!r}: give techniques in the policy of both sides "
                                    f"(e.g. {side}.{own[0].item}), not in the {side.upper()} format")
            sides[side] = one_side["k"]
    for side in SIDES:
        if sides[side] is None:
            raise KVPolicyError(f"KV policy {kv!r}: no format for {side.upper()} (give k=... and v=...)")
    return KVPolicy(tuple(sides["k"]), tuple(sides["v"]), tuple(techniques))


def split_policies(text: str) -> list[str]:
    """'f16,turbo3,first4=q8_0,k=q8_0,v=turbo3' -> ['f16', 'turbo3,first4=q8_0', 'k=q8_0,v=turbo3']."""
    if ";" in text:
        return [part.strip() for part in text.split(";") if part.strip()]
    policies: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        attaches = _CONTINUES.match(item) or ("=" in item and technique_key(item.partition("=")[0].strip())) or (
            item.startswith("v=") and policies and policies[-1].startswith("k="))
        if attaches and policies:
            policies[-1] += "," + item
        else:
            policies.append(item)
    return policies


def _parse_items(text: str, n_layers: int, allow_sides: bool) -> tuple[dict[str, list[str] | None], list]:
    if not isinstance(text, str) or not text.strip():
        raise KVPolicyError(f"KV policy must be a non-empty string, got {text!r}")
    layers: dict[str, list[str] | None] = {"k": None, "v": None}
    overrides, techniques = [], []
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and allow_sides and key in SIDES:
            layers[key] = [_canonical(value, text)] * n_layers
        elif sep and _RANGE.match(key):
            overrides.append((key, _canonical(value, text)))
        elif sep and technique_key(key):
            techniques.append(parse_technique(key, value, text))
        elif not item:
            raise KVPolicyError(f"KV policy {text!r}: empty item")
        elif layers["k"] is None and layers["v"] is None and not overrides:
            base = _canonical(item, text)
            layers = {"k": [base] * n_layers, "v": [base] * n_layers}
        else:
            raise KVPolicyError(f"KV policy {text!r}: cannot read {item!r} (expected a format first, then "
                                "firstN=, lastN=, layersA-B=, k= or v= items)")
    for key, fmt in overrides:
        match = _RANGE.match(key)
        side = match["side"]
        if side and not allow_sides:
            raise KVPolicyError(f"KV policy {text!r}: {key!r} names a side inside a one-side spec")
        for s in ([side] if side else SIDES):
            if layers[s] is None:
                raise KVPolicyError(f"KV policy {text!r}: {key!r} overrides {s.upper()} before it has a format")
            for layer in _layer_range(match, n_layers, text):
                layers[s][layer] = fmt
    names = [(t.name, t.sides) for t in techniques]
    if len(set(names)) < len(names):
        raise KVPolicyError(f"KV policy {text!r}: a technique is given twice for the same side")
    return layers, techniques


def _layer_range(match, n_layers: int, text: str) -> range:
    if match["first"] is not None or match["last"] is not None:
        count = int(match["first"] or match["last"])
        if not 0 < count <= n_layers:
            raise KVPolicyError(f"KV policy {text!r}: {match[0]!r} needs 1..{n_layers} layers")
        return range(count) if match["first"] is not None else range(n_layers - count, n_layers)
    a = int(match["a"])
    b = int(match["b"]) if match["b"] is not None else a
    if not a <= b < n_layers:
        raise KVPolicyError(f"KV policy {text!r}: {match[0]!r} is not a layer range within 0..{n_layers - 1}")
    return range(a, b + 1)


def _canonical(spec: str, text: str) -> str:
    if not spec.strip():
        raise KVPolicyError(f"KV policy {text!r}: empty format")
    try:
        return cache_format(spec.strip()).spec
    except FormatError as exc:
        raise FormatError(f"KV policy {text!r}: {exc}") from None


def _side_items(layer_formats: tuple[str, ...], prefix: str) -> tuple[str, list[str]]:
    """(base format, overrides as '<prefix>firstN=fmt' items) describing one side's layers."""
    counts = Counter(layer_formats)
    base = max(counts, key=lambda f: (counts[f], -layer_formats.index(f)))
    n = len(layer_formats)
    items, start = [], None
    for i in range(n + 1):
        differs = i < n and layer_formats[i] != base
        if differs and (start is None or layer_formats[i] != layer_formats[start]):
            if start is not None:
                items.append(_range_item(prefix, start, i - 1, n, layer_formats[start]))
            start = i
        elif not differs and start is not None:
            items.append(_range_item(prefix, start, i - 1, n, layer_formats[start]))
            start = None
    return base, items


def _range_item(prefix: str, a: int, b: int, n: int, fmt: str) -> str:
    if a == 0 and b < n - 1:
        return f"{prefix}first{b + 1}={fmt}"
    if b == n - 1 and a > 0:
        return f"{prefix}last{n - a}={fmt}"
    return f"{prefix}layers{a}-{b}={fmt}" if a != b else f"{prefix}layer{a}={fmt}"


def _side_spec(layer_formats: tuple[str, ...], prefix: str) -> str:
    base, items = _side_items(layer_formats, prefix)
    return ",".join([base, *items])
