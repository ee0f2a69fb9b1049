"""Randomized Hadamard rotation shared by the rotated formats (turbo, *_rot, tcq).

The rotation of a group x of g values is  y = H (s * x) / sqrt(g)  with H the Sylvester Hadamard
matrix and s a fixed seeded vector of random signs; it is orthonormal, so its inverse is
x = s * (H y) / sqrt(g).
"""
from __future__ import annotations

import functools
import math

import torch

from quantbench.kernels.errors import FormatError

SIGN_SEED = 0x7B0  # fixed: packed data stays decodable across runs and machines


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh-Hadamard transform over the last dimension (torch butterflies)."""
    g = x.shape[-1]
    if not is_power_of_two(g):
        raise FormatError(f"fwht: last dimension {g} is not a power of two")
    lead = x.shape[:-1]
    y = x.reshape(-1, g)
    h = 1
    while h < g:
        y = y.view(-1, g // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return (y.reshape(*lead, g) * (1.0 / math.sqrt(g))).to(x.dtype)


@functools.lru_cache(maxsize=None)
def random_signs(g: int, seed: int = SIGN_SEED) -> torch.Tensor:
    """Fixed ±1 float32 vector of length g (seeded, identical on every machine)."""
    gen = torch.Generator().manual_seed(seed + g)
    return (torch.randint(0, 2, (g,), generator=gen) * 2 - 1).to(torch.float32)


def rotate(x: torch.Tensor, group: int, signs: bool = True) -> torch.Tensor:
    """Rotate each group of `group` consecutive values along the last dimension."""
    grouped = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    if signs:
        grouped = grouped * random_signs(group).to(x.device, x.dtype)
    return fwht(grouped).reshape(x.shape)


def unrotate(y: torch.Tensor, group: int, signs: bool = True) -> torch.Tensor:
    grouped = fwht(y.reshape(*y.shape[:-1], y.shape[-1] // group, group))
    if signs:
        grouped = grouped * random_signs(group).to(y.device, y.dtype)
    return grouped.reshape(y.shape)
