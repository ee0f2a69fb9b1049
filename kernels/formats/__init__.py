"""Format registry.

    from quantbench.kernels import formats
    formats.names()                          # every registered format
    fmt = formats.get("turbo3")              # or "turbo3:group=128:rotate=0", or get("turbo3", rotate=False)
    packed = fmt.encode(x); y = fmt.decode(packed); fmt.bits_per_value

Adding a format is one decorated class in a new file of this folder: subclass `Format` and
decorate it with `@register`. Every module here is imported when the package loads, in the order
of their names (the order `names()` lists the formats in); the format math the formats share
(rotation, Lloyd-Max, the trellis and its table training) lives here too. Installed plugins
(`quantbench.plugins` entry points, see kernels/plugins.py) register theirs on first lookup.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from .base import Format, FormatError, Packed

__all__ = ["Format", "FormatError", "Packed", "get", "names", "options_of", "parse_spec", "register"]

_REGISTRY: dict[str, type[Format]] = {}


def register(cls: type[Format]) -> type[Format]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY:
        raise ValueError(f"format {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    _load_plugins()
    return list(_REGISTRY)


def get(spec: str, **options) -> Format:
    """Build a format from `name[:key=value...]` plus keyword options (keywords win)."""
    name, parsed = parse_spec(spec)
    _load_plugins()
    if name not in _REGISTRY:
        raise FormatError(f"unknown format {name!r}; known formats: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[name]
    parsed.update(options)
    accepted = options_of(name)
    unknown = sorted(set(parsed) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise FormatError(f"format {name!r} has no option {', '.join(unknown)} (options: {allowed})")
    return cls(**{k: _coerce(name, k, v, accepted[k]) for k, v in parsed.items()})


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    if not isinstance(spec, str) or not spec.strip():
        raise FormatError(f"format spec must be a non-empty string, got {spec!r}")
    name, *parts = spec.strip().split(":")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise FormatError(f"format spec {spec!r}: option {part!r} is not key=value")
        options[key] = value
    return name, options


def options_of(name: str) -> dict[str, object]:
    """A registered format's options and their defaults."""
    params = inspect.signature(_REGISTRY[name].__init__).parameters
    return {p.name: p.default for p in params.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY}


def _coerce(fmt: str, key: str, value, default):
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if isinstance(default, bool):
        if text in ("1", "true", "on", "yes"):
            return True
        if text in ("0", "false", "off", "no"):
            return False
        raise FormatError(f"format {fmt!r}: option {key}={value!r} is not a boolean")
    try:
        if isinstance(default, float):
            return float(text)
        if isinstance(default, int) or default is None:
            return int(text)
    except ValueError:
        raise FormatError(f"format {fmt!r}: option {key}={value!r} is not a number") from None
    return value


def _load_plugins() -> None:
    from quantbench.kernels.plugins import load_plugins

    load_plugins()


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
