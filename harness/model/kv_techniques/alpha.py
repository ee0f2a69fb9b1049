"""`v.alpha=<a>[@encode]`, `v.alpha=auto`: the decoded V multiplied by a (seed 001: EXP-0041 V norm
scaling, EXP-0046 context-adaptive alpha, EXP-0048 encode- against decode-time alpha).

Quantization to a few levels shrinks a vector's energy where the norm is not corrected, and the
attention output with it; a slightly larger V undoes that. At decode time (the default) the store
multiplies what it reads; `@encode` multiplies V before it is quantized instead, so the stored codes
hold it. `auto` takes a from the seed's table by the format's bits and the context read (EXP-0046,
measured on its own model: 3 bits 1.022 at 2K, 1.002 at 32K; 2 bits 1.039 and 1.094), linear in
log2(ctx) between 2K and 32K and held outside; formats of 4 bits and more get 1. a = 1 is the
identity. It costs no bits: one scalar per policy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import KVTechniqueError, Technique, technique
from .stores import TechniqueStore

SEED_TABLE = {2: (1.039, 1.094), 3: (1.022, 1.002)}  # bits -> (a at 2K, a at 32K), EXP-0046
TABLE_CONTEXTS = (2048, 32768)
MODES = ("decode", "encode")


def auto_alpha(bits: float, ctx: int) -> float:
    """EXP-0046's a for a format of `bits` bits per value read at context ctx."""
    row = 2 if bits < 2.75 else 3 if bits < 4 else None
    if row is None:
        return 1.0
    lo, hi = (math.log2(c) for c in TABLE_CONTEXTS)
    t = min(max((math.log2(max(ctx, 1)) - lo) / (hi - lo), 0.0), 1.0)
    at_2k, at_32k = SEED_TABLE[row]
    return at_2k + t * (at_32k - at_2k)


@technique
@dataclass(frozen=True)
class Alpha(Technique):
    value: float | None = 1.0  # None: auto
    mode: str = "decode"
    name = "alpha"
    one_side = "v"

    @classmethod
    def parse(cls, sides, count, value, text):
        number, _, mode = value.partition("@")
        mode = mode or "decode"
        if mode not in MODES:
            raise KVTechniqueError(f"KV policy {text!r}: alpha mode {mode!r}; known: {', '.join(MODES)}")
        if number == "auto":
            if mode != "decode":
                raise KVTechniqueError(f"KV policy {text!r}: alpha=auto follows the context read, so it "
                                       "applies at decode time only")
            return cls(sides, None, mode)
        try:
            alpha = float(number)
        except ValueError:
            raise KVTechniqueError(f"KV policy {text!r}: alpha {number!r} is not a number or auto") from None
        if not math.isfinite(alpha) or alpha <= 0:
            raise KVTechniqueError(f"KV policy {text!r}: alpha must be a positive finite number, got {number}")
        return cls(sides, alpha, mode)

    @property
    def item(self) -> str:
        value = "auto" if self.value is None else f"{self.value:g}"
        return f"v.alpha={value}" + ("" if self.mode == "decode" else f"@{self.mode}")

    def wrap(self, store, make_store, layer, side, context):
        fmt = store.base_format
        bits = fmt.bits_per_value_for(store.head_dim) if fmt is not None else 16.0
        return AlphaStore(store, self.value, self.mode, bits)


class AlphaStore(TechniqueStore):
    def __init__(self, inner, alpha: float | None, mode: str, bits: float):
        super().__init__(inner)
        self.alpha, self.mode, self.bits = alpha, mode, bits

    def write(self, x, start):
        self.inner.write(x * self.alpha if self.mode == "encode" else x, start)

    def read(self, length, dtype):
        out = self.inner.read(length, dtype)
        if self.mode == "encode":
            return out
        alpha = auto_alpha(self.bits, length) if self.alpha is None else self.alpha
        return out * torch.tensor(alpha, dtype=out.dtype)

