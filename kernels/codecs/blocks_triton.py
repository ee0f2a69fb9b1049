"""Triton GPU variants for the llama.cpp block formats q8_0, q4_0, q4_1: quantize and dequantize.

One program handles BLOCKS_PER_PROGRAM blocks of 32 values as a [blocks, 32] tile (q4 formats:
two [blocks, 16] half tiles, whose values share a nibble byte). The kernels live in
kernels/codecs/blocks_triton_jit.py; triton is imported inside the factories.
"""
from __future__ import annotations

import torch

from quantbench.kernels.registry import variant

FORMATS = ("q8_0", "q4_0", "q4_1")
BLOCKS_PER_PROGRAM = 64


def _launcher(kernel, args, nblocks: int):
    grid = ((nblocks + BLOCKS_PER_PROGRAM - 1) // BLOCKS_PER_PROGRAM,)

    def launch():
        kernel[grid](*args, nblocks, BP=BLOCKS_PER_PROGRAM, enable_fp_fusion=False)

    return launch


@variant("quantize", backend="triton", name="tiled", formats=FORMATS, needs=("triton",), device="cuda")
def quantize_blocks_triton(case):
    """[64 blocks x 32] tiles per program, float32 arithmetic of ggml's reference quantizers"""
    fmt = case.format_obj
    x = case.inputs()["x"]
    fmt.check_input(x)
    x = x.to(torch.float32).contiguous()
    packed = fmt.empty_packed(x.shape, x.device)
    fields = [packed[name] for name in fmt.scale_fields] + [packed["qs"]]
    from quantbench.kernels.codecs.blocks_triton_jit import QUANTIZE

    launch = _launcher(QUANTIZE[fmt.name], (x, *fields), x.numel() // 32)

    def run():
        launch()
        return packed

    return run


@variant("dequantize", backend="triton", name="tiled", formats=FORMATS, needs=("triton",), device="cuda")
def dequantize_blocks_triton(case):
    """[64 blocks x 32] tiles per program, output written in the case's dtype"""
    fmt = case.format_obj
    x = case.inputs()["x"]
    packed = fmt.encode(x.cpu()).to(x.device)  # the reference's encoding, wherever the kernel runs
    out = torch.empty(tuple(x.shape), dtype=case.torch_dtype, device=x.device)
    fields = [packed[name] for name in fmt.scale_fields] + [packed["qs"]]
    from quantbench.kernels.codecs.blocks_triton_jit import DEQUANTIZE

    launch = _launcher(DEQUANTIZE[fmt.name], (*fields, out), x.numel() // 32)

    def run():
        launch()
        return out

    return run
