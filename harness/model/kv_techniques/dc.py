"""`dc=on` (or `k.dc=on`, `v.dc=on`): per-token DC removal (NSNQuant; seed 001 EXP-0011). Each
token's mean over its head's channels is removed before the format and added back after decoding;
the means are side data, fp16 per token and KV head: 16 / head_dim bits per value.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import Switch, technique
from .stores import TechniqueStore, host_start


@technique
@dataclass(frozen=True)
class DCRemoval(Switch):
    name = "dc"
    order = -30


    def wrap(self, store, make_store, layer, side, context):
        return DCStore(store)

    def extra_bits(self, head_dim, ctx):
        return 16 / head_dim


class DCStore(TechniqueStore):
    def __init__(self, inner):
        super().__init__(inner)
        self.means = torch.zeros(inner.max_len, *inner.rows, 1, dtype=torch.float16, device=inner.device)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.means.numel() * self.means.element_size()

    def write(self, x, start):
        start = host_start(start, "dc")
        mean = x.float().mean(-1, keepdim=True).half()
        self.means[start:start + x.shape[0]] = mean
        self.inner.write(x - mean.to(x.dtype), start)

    def read(self, length, dtype):
        return (self.inner.read(length, torch.float32) + self.means[:length].float()).to(dtype)
