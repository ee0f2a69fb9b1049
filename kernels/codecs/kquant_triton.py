"""Triton GPU `dequantize` of llama.cpp's k-quants q2_k .. q6_k, bit for bit the formats' decode.

One program decodes 4 super-blocks (1024 values); each value's code, sub-block scale and min are
found by index arithmetic on the packed byte arrays (codecs/kquant_triton_jit.py, imported in the
factory). `kquant_arguments` is shared with the fused matmuls (matmul/kquant_triton.py).
"""
from __future__ import annotations

import torch

from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.k_quants import SuperBlockFormat
from quantbench.kernels.registry import variant

SUPER_BLOCKS_PER_PROGRAM = 4
HIGH_BITS = {"q3_k": "hmask", "q5_k": "qh", "q6_k": "qh"}
LOW_CODES = {"q6_k": "ql"}


def is_k_quant(fmt) -> bool:
    return isinstance(fmt, SuperBlockFormat)


def kquant_arguments(fmt, packed: Packed) -> tuple[tuple[torch.Tensor, ...], dict]:
    """((d, dmin, scales, low codes, high bits), the kernels' constexprs) of a packed k-quant; a field
    the type lacks is given as d (the kernels never read it)."""
    d = packed["d"]
    has_min = "dmin" in packed.fields
    tensors = (d, packed["dmin"] if has_min else d, packed["scales"], packed[LOW_CODES.get(fmt.name, "qs")],
               packed[HIGH_BITS[fmt.name]] if fmt.name in HIGH_BITS else d)
    sub = 32 if fmt.name in ("q4_k", "q5_k") else 16
    return tuple(t.contiguous() for t in tensors), {"TYPE": fmt.name, "SUB": sub, "HAS_MIN": has_min}


def dequantize_launcher(fmt, packed: Packed, out: torch.Tensor):
    """A callable that decodes `packed` into `out` (its shape, any float dtype)."""
    from quantbench.kernels.codecs.kquant_triton_jit import dequantize_k_quant

    tensors, constants = kquant_arguments(fmt, packed)
    nblocks = out.numel() // 256
    grid = ((nblocks + SUPER_BLOCKS_PER_PROGRAM - 1) // SUPER_BLOCKS_PER_PROGRAM,)

    def launch():
        dequantize_k_quant[grid](*tensors, out, nblocks, **constants, BB=SUPER_BLOCKS_PER_PROGRAM,
                                 enable_fp_fusion=False)

    return launch


@variant("dequantize", backend="triton", name="tiled", formats=is_k_quant, needs=("triton",), device="cuda")
def dequantize_k_quants_triton(case):
    """4 super-blocks per program, each value decoded by index arithmetic on its fields"""
    fmt = case.format_obj
    x = case.inputs()["x"]
    packed = fmt.encode(x.cpu()).to(x.device)  # the reference's encoding, wherever the kernel runs
    out = torch.empty(tuple(x.shape), dtype=case.torch_dtype, device=x.device)
    launch = dequantize_launcher(fmt, packed, out)

    def run():
        launch()
        return out

    return run
