"""Triton GPU `dequantize` for the floating-point micro formats: fp8_e4m3 / fp8_e5m2 (row, tensor or
no scale), mxfp8 / mxfp6 / mxfp4 (E8M0 block scales) and nvfp4 (E4M3 block scales times the fp32
tensor or row scale), bit for bit the formats' own decode.

One program decodes a tile of 1024 values, 16 rows of 64 (more rows of fewer where rows are
shorter); each code is decoded by bit arithmetic and multiplied by its block's scale
(kernels/codecs/micro_triton_jit.py, imported in the factory). The rotated options (rotate=1)
undo the rotation in torch after the kernel, as the numba variant does. `micro_arguments` is
shared with the fused GEMV (kernels/matmul/micro_triton.py).
"""
from __future__ import annotations

import torch

from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.fp8 import FP8Format
from quantbench.kernels.formats.minifloat import E2M1, Element
from quantbench.kernels.formats.mx import MXFormat
from quantbench.kernels.formats.nvfp4 import NVFP4
from quantbench.kernels.formats.optional_rotation import OptionalRotation
from quantbench.kernels.registry import variant

TILE_VALUES = 1024  # values a program decodes
MAX_TILE_COLUMNS = 64  # a divisor of every KV head dim and weight width of the suite, so no lane idles


def is_micro(fmt) -> bool:
    return isinstance(fmt, (FP8Format, MXFormat, NVFP4))


def element_constants(element: Element) -> dict:
    """The constexprs of micro_triton_jit.element_value for this element format."""
    return dict(EXP=element.exp_bits, MAN=element.man_bits, BIAS=element.bias, MAX_NORMAL=element.max_normal,
                SPECIALS=not bool(torch.isfinite(element.table()).all()))


def micro_arguments(fmt, packed: Packed) -> tuple[tuple[torch.Tensor, ...], int, dict]:
    """((codes, block scale codes, fp32 second-level scales), the second-level scales' stride per row,
    the kernels' format constexprs) of a packed micro-format value. Formats without one level get a
    neutral one: fp8 no block scales (BLOCK_SCALE ""; any uint8 tensor stands in), MX and fp8's
    scale=none a second-level scale of 1 (exact)."""
    codes = packed["codes"]
    one = torch.ones((), device=codes.device)
    if isinstance(fmt, FP8Format):
        second = one if fmt.scale == "none" else packed["scales"]
        return (codes, codes, second), int(fmt.scale == "row"), {
            **element_constants(fmt.element), "BLOCK": 1, "BLOCK_SCALE": ""}
    if isinstance(fmt, NVFP4):
        return (codes, packed["scales"], packed["tensor_scale"]), int(fmt.scale == "row"), {
            **element_constants(E2M1), "BLOCK": fmt.block, "BLOCK_SCALE": "e4m3"}
    return (codes, packed["scales"], one), 0, {
        **element_constants(fmt.element), "BLOCK": fmt.block, "BLOCK_SCALE": "e8m0"}


def dequantize_launcher(fmt, packed: Packed, out: torch.Tensor):
    """A callable that decodes `packed` into `out` (its shape, any float dtype)."""
    from quantbench.kernels.codecs.micro_triton_jit import dequantize_micro

    dim = packed.shape[-1]
    rows = out.numel() // dim
    columns = min(MAX_TILE_COLUMNS, 1 << (dim - 1).bit_length())
    tile_rows = TILE_VALUES // columns
    grid = ((rows + tile_rows - 1) // tile_rows, (dim + columns - 1) // columns)
    tensors, row_scale_stride, constants = micro_arguments(fmt, packed)

    def launch():
        dequantize_micro[grid](*tensors, out, rows, dim, row_scale_stride, **constants, BR=tile_rows, BD=columns)

    return launch


def rotates(fmt) -> bool:
    return isinstance(fmt, OptionalRotation) and fmt.rotate


@variant("dequantize", backend="triton", name="tiled", formats=is_micro, needs=("triton",), device="cuda")
def dequantize_micro_triton(case):
    """1024-value tiles per program, codes decoded by bit arithmetic, one scale per block"""
    fmt = case.format_obj
    x = case.inputs()["x"]
    packed = fmt.encode(x.cpu()).to(x.device)  # the reference's encoding, wherever the kernel runs
    dtype = torch.float32 if rotates(fmt) else case.torch_dtype  # the rotation is undone in float32
    out = torch.empty(packed.shape, dtype=dtype, device=x.device)
    launch = dequantize_launcher(fmt, packed, out)

    def run():
        launch()
        return fmt.unrotated(out).to(case.torch_dtype) if rotates(fmt) else out

    return run
