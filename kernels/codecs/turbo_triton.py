"""Triton quantize / dequantize for turbo2, turbo3 and turbo4_mse (the plain Lloyd-Max turbo
formats): one program per tile of groups, FWHT butterflies in registers
(kernels/codecs/turbo_triton_jit.py). Triton is imported inside the factories.

turbo4 is left to the torch and numba backends: its QJL projection S r needs a float64 matrix
product whose signs match the reference's, which tl.dot does not promise.
"""
from __future__ import annotations

import math

import torch

from quantbench.kernels.formats.base import Packed
from quantbench.kernels.fwht.triton import rows_per_tile
from quantbench.kernels.registry import variant

FORMATS = ("turbo2", "turbo3", "turbo4_mse")


def _setup(fmt, g: int, device):
    return {
        "signs": fmt.sign_vector(g).to(device),
        "levels": fmt.codebook(g).to(device),
        "scale": 1.0 / math.sqrt(g),
        "meta": dict(G=g, LOG_G=g.bit_length() - 1, BITS=fmt.bits, ROWS=rows_per_tile(g), ROTATE=fmt.rotate),
    }


@variant("quantize", backend="triton", name="butterfly", formats=FORMATS, needs=("triton",), device="cuda")
def quantize_turbo_triton(case):
    """one program per tile of groups: norm, signs, FWHT, bucketize, norm correction, bit planes"""
    import triton

    from quantbench.kernels.codecs.turbo_triton_jit import quantize_kernel

    fmt = case.format_obj
    x = case.inputs()["x"].to(torch.float32).contiguous()
    fmt.check_input(x)
    dim = x.shape[-1]
    g = fmt.group_for(dim)
    ngroups = x.numel() // g
    lead = (*x.shape[:-1], dim // g)
    c = _setup(fmt, g, x.device)
    bounds = fmt.boundaries(g).to(x.device)
    fields = {"codes": torch.empty(*lead, fmt.bits, g // 8, dtype=torch.uint8, device=x.device),
              "norms": torch.empty(lead, dtype=torch.float16, device=x.device)}
    grid = (triton.cdiv(ngroups, c["meta"]["ROWS"]),)

    def run():
        quantize_kernel[grid](x, c["signs"], bounds, c["levels"], fields["codes"], fields["norms"], ngroups,
                              c["scale"], NORM_CORRECTION=fmt.norm_correction, enable_fp_fusion=False, **c["meta"])
        return Packed(fmt.spec, tuple(x.shape), fields)

    return run


@variant("dequantize", backend="triton", name="butterfly", formats=FORMATS, needs=("triton",), device="cuda")
def dequantize_turbo_triton(case):
    """one program per tile of groups: unpack bit planes, codebook x norm, inverse FWHT, signs"""
    import triton

    from quantbench.kernels.codecs.turbo_triton_jit import dequantize_kernel

    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"])
    dim = packed.shape[-1]
    g = fmt.group_for(dim)
    ngroups = packed["norms"].numel()
    c = _setup(fmt, g, packed["norms"].device)
    out = torch.empty(packed.shape, dtype=torch.float32, device=packed["norms"].device)
    grid = (triton.cdiv(ngroups, c["meta"]["ROWS"]),)
    dtype = case.torch_dtype

    def run():
        dequantize_kernel[grid](packed["codes"], packed["norms"], c["signs"], c["levels"], out, ngroups,
                                c["scale"], enable_fp_fusion=False, **c["meta"])
        return out.to(dtype)

    return run
