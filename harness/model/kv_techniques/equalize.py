"""`k.equalize=<strength>|auto`: per-channel scales for K before the format's rotation (InnerQ; seed 001
EXP-0035, EXP-0036). K is stored as K * s and read back as decoded / s, which is the query's side
of the same product: (q / s) . (K s) = q . K, so q . k is unchanged before quantization.

s = m^-strength per KV head and channel, m the channel's largest |K| on the model's calibration
sequences (kv_calibration.py), normalized to a geometric mean of 1: strength 1 gives every channel
the same range, 0 changes nothing. `auto` is strength 0.5 in the layers whose largest-to-smallest
scale ratio is above AUTO_RATIO and nothing elsewhere (the seed's auto-detect: its head_dim-256
model measured a ratio of 1.16 and was left alone). The scales are a table of the model's: fp16 per
KV head and channel and layer, 16 / ctx bits per value at context ctx (counted in every layer,
also where auto leaves a layer alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import KVTechniqueError, Technique, technique
from .stores import TransformStore

AUTO_STRENGTH = 0.5
AUTO_RATIO = 2.0
TINY = 1e-6  # a channel that never moved keeps a finite scale


def channel_scales(absmax: torch.Tensor, strength: float) -> torch.Tensor:
    """[kv_heads, head_dim] scales of geometric mean 1 per head, rounded to fp16 as they are stored."""
    log = -strength * absmax.clamp_min(TINY).log()
    return (log - log.mean(-1, keepdim=True)).exp().half().float()


def largest_ratio(scales: torch.Tensor) -> float:
    """The largest scale over the smallest, in the KV head where they differ most (auto's test)."""
    return float((scales.amax(-1) / scales.amin(-1)).max())


@technique
@dataclass(frozen=True)
class Equalize(Technique):
    strength: float | None = AUTO_STRENGTH  # None: auto
    name = "equalize"
    order = -10
    one_side = "k"

    @classmethod
    def parse(cls, sides, count, value, text):
        if value == "auto":
            return cls(sides, None)
        try:
            strength = float(value)
        except ValueError:
            raise KVTechniqueError(f"KV policy {text!r}: equalize strength {value!r} is not a number or auto") from None
        if not 0 <= strength <= 1:
            raise KVTechniqueError(f"KV policy {text!r}: equalize strength must be within 0..1, got {value}")
        return cls(sides, strength)

    @property
    def item(self) -> str:
        return "k.equalize=" + ("auto" if self.strength is None else f"{self.strength:g}")

    def scales(self, absmax: torch.Tensor) -> torch.Tensor | None:
        """The layer's scales, or None where auto leaves it alone."""
        if self.strength is not None:
            return channel_scales(absmax, self.strength)
        scales = channel_scales(absmax, AUTO_STRENGTH)
        return scales if largest_ratio(scales) > AUTO_RATIO else None

    def wrap(self, store, make_store, layer, side, context):
        scales = self.scales(context.calibrated("k.equalize").absmax(layer, side))
        if scales is None:
            return store
        s = scales.to(store.device)
        return TransformStore(store, lambda x: x * s, lambda y: y / s)

    def extra_bits(self, head_dim, ctx):
        return 16 / ctx

