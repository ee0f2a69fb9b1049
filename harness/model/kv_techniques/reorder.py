"""`reorder=on` (or one side): channels permuted before the format's rotation (seed 001 EXP-0015),
so that each rotation group, and each block after it, holds an even share of the large channels:
channels sorted by their calibrated largest |value| (kv_calibration.py) are dealt out to the
groups in turn, largest first. A rotation over the whole head (turbo at head_dim 64) is then just
another orthogonal transform. The permutation is a table of the model's: head_dim log2(head_dim)
bits per KV head and layer, log2(head_dim) / ctx bits per value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import Switch, technique
from .stores import TransformStore

DEAL_BLOCK = 32  # the block formats' block: the groups the large channels are spread over


def dealt_order(absmax: torch.Tensor, groups: int) -> torch.Tensor:
    """[kv_heads, dim] permutation: position i of group g holds the (i * groups + g)-th largest channel."""
    ranked = absmax.argsort(dim=-1, descending=True)
    heads, dim = ranked.shape
    return ranked.reshape(heads, dim // groups, groups).transpose(1, 2).reshape(heads, dim)


@technique
@dataclass(frozen=True)
class Reorder(Switch):
    name = "reorder"
    order = -20


    def wrap(self, store, make_store, layer, side, context):
        stats = context.calibrated("reorder")
        dim = store.head_dim
        groups = max(dim // DEAL_BLOCK, 1)
        order = dealt_order(stats.absmax(layer, side), groups).to(store.device)
        inverse = order.argsort(dim=-1)

        def permute(x, index):
            return x.gather(-1, index.expand(*x.shape[:-2], *index.shape))

        return TransformStore(store, lambda x: permute(x, order), lambda y: permute(y, inverse))

    def extra_bits(self, head_dim, ctx):
        return math.log2(head_dim) / ctx
