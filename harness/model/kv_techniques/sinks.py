"""`sinks<N>=<format>`: the first N positions stored in a format of higher precision (seed 001
EXP-0010, attention-sink protection; StreamingLLM's observation that the first tokens draw a large
share of attention whatever they hold). The other positions keep the policy's format; bits per
value count the N positions in their own format.
"""
from __future__ import annotations

from dataclasses import dataclass

from quantbench.kernels import formats

from . import KVTechniqueError, Technique, technique
from .stores import TechniqueStore, host_start


def held_format(value: str, text: str) -> str:
    """The canonical spec of a technique's higher-precision format."""
    try:
        return formats.get(value).spec
    except formats.FormatError as exc:
        raise KVTechniqueError(f"KV policy {text!r}: {exc}") from None


@technique
@dataclass(frozen=True)
class Sinks(Technique):
    count: int = 4
    spec: str = "q8_0"
    name = "sinks"
    order = 10
    needs_count = True

    @classmethod
    def parse(cls, sides, count, value, text):
        return cls(sides, count, held_format(value, text))

    @property
    def item(self) -> str:
        return f"{self.side_prefix()}sinks{self.count}={self.spec}"

    def wrap(self, store, make_store, layer, side, context):
        return SinkStore(store, make_store(self.spec), self.count)

    def held(self, ctx):
        return range(min(self.count, ctx)), self.spec


class SinkStore(TechniqueStore):
    def __init__(self, inner, sinks, count: int):
        super().__init__(inner, sinks)
        self.sinks, self.count = sinks, count

    def write(self, x, start):
        start = host_start(start, "sinks")
        split = min(max(self.count - start, 0), x.shape[0])
        if split:
            self.sinks.write(x[:split], start)
        if split < x.shape[0]:
            self.inner.write(x[split:], start + split)

    def read(self, length, dtype):
        out = self.inner.read(length, dtype)
        held = min(self.count, length)
        out[:held] = self.sinks.read(held, dtype)
        return out
