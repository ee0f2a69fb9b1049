"""`walsh=on` (or one side): the rotated formats' Hadamard outputs in sequency (Walsh) order (seed 001
EXP-0008, GSR Walsh ordering). The Sylvester FWHT gives its outputs in natural order; sequency order
sorts them by their rows' sign changes, so neighbouring outputs are of similar frequency. Where
outputs share a scale (a block of q4_0_rot) or a trellis path (TCQ), which outputs are neighbours
changes the error; turbo's scalar codes, one codebook for every output, do not care.

The store writes x' = R^T P R x, with R the format's rotation (signs, then the FWHT) and P the
sequency permutation, so that the format's own rotation of x' is P R x; reads undo it. No bits:
the permutation is fixed by the group size.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from quantbench.kernels.formats.rotation import fwht, random_signs

from . import KVTechniqueError, Switch, technique
from .stores import TransformStore


@functools.lru_cache(maxsize=None)
def sequency_order(g: int) -> torch.Tensor:
    """Natural-order FWHT output indices sorted by their Hadamard row's sign changes."""
    rows = fwht(torch.eye(g)) > 0
    changes = (rows[:, 1:] != rows[:, :-1]).sum(-1)
    return changes.argsort(stable=True)


def rotated_group(fmt, head_dim: int) -> int:
    """The rotation group of a format that rotates by signs and the FWHT; a clear error otherwise."""
    if fmt is None or not getattr(fmt, "rotation_flops", lambda d: 0)(head_dim) or not hasattr(fmt, "signs"):
        raise KVTechniqueError(f"walsh orders a rotation's outputs; {fmt.spec if fmt else 'f32'} does not rotate")
    return fmt.group_for(head_dim)


@technique
@dataclass(frozen=True)
class Walsh(Switch):
    name = "walsh"
    order = -40


    def wrap(self, store, make_store, layer, side, context):
        fmt = store.base_format
        g = rotated_group(fmt, store.head_dim)
        signs = (random_signs(g) if fmt.signs else torch.ones(g)).to(store.device)
        order = sequency_order(g).to(store.device)
        inverse = order.argsort()

        def reordered(x, index):
            groups = x.float().reshape(*x.shape[:-1], -1, g)
            y = fwht(groups * signs)[..., index]
            return (fwht(y) * signs).reshape(x.shape)

        return TransformStore(store, lambda x: reordered(x, order), lambda y: reordered(y, inverse))
