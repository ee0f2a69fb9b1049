"""`k.prerope=on`: keys stored before RoPE, rotated to their positions when read (KVQuant's pre-RoPE
keys: Hooper et al. 2024). Before RoPE a key channel keeps its outliers in the same place at every
position; RoPE then spins each channel pair by a position-dependent angle, which smears them over
the pair. Per-channel key formats (`k=kivi2,k.prerope=on`) are the ones that care. The store
undoes RoPE on each written key (the rotation by minus its position's angles) and applies it to
every key read; no bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import Switch, technique
from .stores import TechniqueStore, host_start


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the model's rotate-half layout on x [n, batch, heads, dim] with cos/sin [n, dim]."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, None, :] + turned * sin[:, None, None, :]


@technique
@dataclass(frozen=True)
class PreRope(Switch):
    name = "prerope"
    order = -50
    one_side = "k"


    def wrap(self, store, make_store, layer, side, context):
        from quantbench.harness.model.llama import rope_tables

        cos, sin = rope_tables(context.config, store.device)
        return PreRopeStore(store, cos, sin)


class PreRopeStore(TechniqueStore):
    def __init__(self, inner, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__(inner)
        self.cos, self.sin = cos, sin

    def write(self, x, start):
        start = host_start(start, "prerope")
        span = slice(start, start + x.shape[0])
        self.inner.write(rotate(x.float(), self.cos[span], -self.sin[span]).to(x.dtype), start)

    def read(self, length, dtype):
        return rotate(self.inner.read(length, torch.float32), self.cos[:length], self.sin[:length]).to(dtype)

    def read_recent(self, length, dtype):
        return rotate(self.inner.read_recent(length, torch.float32), self.cos[:length], self.sin[:length]).to(dtype)
