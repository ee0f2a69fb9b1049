"""`window<W>=<format>`: the last W positions a query sees stay in a format of higher precision until
they age out (KIVI's full-precision residual; Liu et al. 2024, "KIVI: a tuning-free asymmetric 2bit
quantization for KV cache"). Every position is also quantized in the policy's format, which is what
a query reads once the position is W or more behind it.

Which positions are recent depends on the query: in a prefill chunk, the query at position p reads
p - W + 1 .. p at the higher precision and the older ones quantized, as it would have during decode.
So the store gives attention both reads (`read`, `read_recent`) and its `window`, and
attention/windowed.py picks per query and key. Bits per value count W positions of the context in
the higher format (a window of 32 in f16 at ctx 512 adds about 1 bit to a 3-bit format).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import HeldPositions, KVTechniqueError, technique
from .stores import TechniqueStore, host_start


@technique
@dataclass(frozen=True)
class Window(HeldPositions):
    name = "window"
    order = 20

    def wrap(self, store, make_store, layer, side, context):
        return WindowStore(store, make_store(self.spec), self.count)

    def held(self, ctx):
        return range(max(ctx - self.count, 0), ctx), self.spec


class WindowStore(TechniqueStore):
    def __init__(self, inner, recent, count: int):
        if inner.recent_mask is not None:
            raise KVTechniqueError("a recent window over a store that keeps recent tokens already (kivi's "
                                   "residual, another window) would hide its rule")
        super().__init__(inner, recent)
        self.recent, self.count = recent, count

    def recent_mask(self, positions, keys):
        return positions - keys < self.count

    def write(self, x, start):
        start = host_start(start, "window")
        self.inner.write(x, start)
        self.recent.write(x, start)

    def read_recent(self, length, dtype):
        return self.recent.read(length, dtype)
