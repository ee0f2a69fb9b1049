"""KV-cache techniques: options of a KV policy that change how a layer's keys or values are stored
or read, on top of its format (the README's "KV-cache techniques" section names each one's source).

A technique is a policy item `[k.|v.]<name>[<count>]=<value>`, e.g. `sinks4=q8_0`, `window32=f16`,
`v.alpha=1.02`; without a side it applies to K and V (a technique may insist on one). Each module of
this package registers its class with `@technique`; a new technique is a new file.

A technique object is frozen and knows:
    item           its canonical policy item
    wrap(store, make_store, layer, side, context)
                   the store that layer's side uses, built around `store` (a KVStore or an
                   earlier technique's store); `make_store(spec)` builds a KVStore of the same shape
                   in another format (for positions kept at a higher precision); `context` is the
                   cache's CacheContext: the model's config and `calibrated(what)`, its
                   KVCalibration (kv_calibration.py), for the techniques that need them
    held(ctx)      (positions, format spec) it stores in another format at context ctx, or None
    extra_bits(head_dim, ctx)
                   bits per value it adds beyond the stored codes (scales, tables: a table of the
                   model's, such as calibrated scales, counted once per layer over the ctx positions)
Stores made by techniques have `format` None, so the attention backends read them through
`read` (dequant_sdpa), never through a native kernel that would bypass them.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

from quantbench.harness.model.errors import ModelError

SIDES = ("k", "v")
_TECHNIQUES: dict[str, type] = {}
_ITEM = re.compile(r"^(?:(?P<side>[kv])\.)?(?P<name>[a-z_]+?)(?P<count>\d*)$")
_loaded = False


class KVTechniqueError(ModelError):
    """A technique item that does not parse, or a value it refuses."""


@dataclass(frozen=True)
class CacheContext:
    """What a cache knows of its model: the config, and a callable giving its KVCalibration (None: the
    cache was made without a model, e.g. by KVCache directly)."""

    config: object
    calibration: object = None

    def calibrated(self, what: str):
        if self.calibration is None:
            raise KVTechniqueError(f"{what} needs the model's calibration (a cache made by Model.new_cache)")
        return self.calibration()


@dataclass(frozen=True)
class Technique:
    """Base of the techniques: `sides` it applies to; subclasses add their parameters."""

    sides: tuple[str, ...]
    name = ""
    order = 0  # wrapping order, innermost (nearest the format, last to see a written value) first
    needs_count = False  # the item carries a count: sinks4=..., window32=...
    one_side = None  # the side the technique is defined for, when only one

    @classmethod
    def parse(cls, sides: tuple[str, ...], count: int | None, value: str, text: str) -> Technique:
        raise NotImplementedError

    @property
    def item(self) -> str:
        raise NotImplementedError

    def side_prefix(self) -> str:
        return "" if self.sides == SIDES else f"{self.sides[0]}."

    def wrap(self, store, make_store, layer: int, side: str, context):
        raise NotImplementedError

    def held(self, ctx: int) -> tuple[range, str] | None:
        return None

    def extra_bits(self, head_dim: int, ctx: int) -> float:
        return 0.0


@dataclass(frozen=True)
class HeldPositions(Technique):
    """Base of the techniques that keep `count` positions in another format `spec` (sinks, window)."""

    count: int = 0
    spec: str = ""
    needs_count = True

    @classmethod
    def parse(cls, sides, count, value, text):
        from quantbench.kernels import formats

        try:
            return cls(sides, count, formats.get(value).spec)
        except formats.FormatError as exc:
            raise KVTechniqueError(f"KV policy {text!r}: {exc}") from None

    @property
    def item(self) -> str:
        return f"{self.side_prefix()}{self.name}{self.count}={self.spec}"


@dataclass(frozen=True)
class Switch(Technique):
    """Base of the techniques that are on or absent (`dc=on`, `walsh=on`, ...)."""

    @classmethod
    def parse(cls, sides, count, value, text):
        if value != "on":
            raise KVTechniqueError(f"KV policy {text!r}: {cls.name} takes the value on, got {value!r}")
        return cls(sides)

    @property
    def item(self) -> str:
        prefix = f"{self.one_side}." if self.one_side else self.side_prefix()
        return f"{prefix}{self.name}=on"


def technique(cls):
    """Register a Technique subclass under its `name`."""
    if cls.name in _TECHNIQUES:
        raise ValueError(f"KV technique {cls.name!r} registered twice")
    _TECHNIQUES[cls.name] = cls
    return cls


def load_techniques() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")


def technique_names() -> list[str]:
    load_techniques()
    return sorted(_TECHNIQUES)


def technique_key(key: str) -> bool:
    """Whether a policy item's key names a technique (`sinks4`, `v.alpha`, ...)."""
    match = _ITEM.match(key)
    return bool(match) and match["name"] in technique_names()


def parse_technique(key: str, value: str, text: str) -> Technique:
    """The technique of the policy item `key=value` (in policy `text`, for the error messages)."""
    match = _ITEM.match(key)
    if not match or match["name"] not in technique_names():
        raise KVTechniqueError(f"KV policy {text!r}: {key!r} is no technique (known: {', '.join(technique_names())})")
    cls = _TECHNIQUES[match["name"]]
    sides = (match["side"],) if match["side"] else SIDES
    if cls.one_side and sides != (cls.one_side,):
        raise KVTechniqueError(f"KV policy {text!r}: {cls.name} applies to one side only: write "
                               f"{cls.one_side}.{cls.name}=...")
    if cls.needs_count != bool(match["count"]):
        form = f"{cls.name}<N>=..." if cls.needs_count else f"{cls.name}=..."
        raise KVTechniqueError(f"KV policy {text!r}: {key!r}: write the technique as {form}")
    count = int(match["count"]) if match["count"] else None
    if count is not None and count <= 0:
        raise KVTechniqueError(f"KV policy {text!r}: {key!r} needs a positive count")
    if not value.strip():
        raise KVTechniqueError(f"KV policy {text!r}: {key!r} has no value")
    return cls.parse(sides, count, value.strip(), text)
