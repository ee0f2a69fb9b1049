"""Triton fast Walsh-Hadamard transform (op `fwht`): one program per tile of rows, butterflies as
tile reshapes in registers (kernels/fwht/triton_jit.py). Triton is imported inside the factory."""
from __future__ import annotations

import math

import torch

from quantbench.kernels.formats.base import FormatError
from quantbench.kernels.formats.rotation import is_power_of_two
from quantbench.kernels.registry import variant

TILE_VALUES = 4096  # values per program: rows per tile = TILE_VALUES / row length


def rows_per_tile(g: int) -> int:
    return max(1, TILE_VALUES // g)


@variant("fwht", backend="triton", name="butterfly", needs=("triton",), device="cuda")
def fwht_triton(case):
    """one program per tile of rows; butterfly stages as reshape/split/join of the tile"""
    import triton

    from quantbench.kernels.fwht.triton_jit import fwht_kernel

    x = case.inputs()["x"].to(torch.float32).contiguous()
    g = x.shape[-1]
    if not is_power_of_two(g):
        raise FormatError(f"fwht: last dimension {g} is not a power of two")
    rows = x.numel() // g
    out = torch.empty_like(x)
    tile = rows_per_tile(g)
    grid = (triton.cdiv(rows, tile),)
    scale = 1.0 / math.sqrt(g)

    def run():
        fwht_kernel[grid](x, out, rows, scale, G=g, LOG_G=g.bit_length() - 1, ROWS=tile, enable_fp_fusion=False)
        return out

    return run
