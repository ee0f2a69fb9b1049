"""`sinks<N>=<format>`: the first N positions stored in a format of higher precision (seed 001
EXP-0010, attention-sink protection; StreamingLLM's observation that the first tokens draw a large
share of attention whatever they hold). The other positions keep the policy's format; bits per
value count the N positions in their own format.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import HeldPositions, technique
from .stores import TechniqueStore, host_start


@technique
@dataclass(frozen=True)
class Sinks(HeldPositions):
    name = "sinks"
    order = 10

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
