"""Activations quantized on the fly: each token's row encoded in a format and decoded back.

The matmul then multiplies the decoded values in float, which equals the integer GEMM of the codes
rescaled by their scales up to float rounding (kernels/matmul's w8a8 / w4a8 / int_mm variants run
the integer version). A format with a per-tensor scale (fp8_e4m3:scale=tensor, nvfp4) takes it
over the whole input of the matmul, every token of the chunk at once.
"""
from __future__ import annotations

import torch

from quantbench.kernels.formats import Format

IDENTITY = "f32"  # the float32 "format" stores every value as it is: no quantization


class RowQuantizer:
    """x [..., k] -> x with each row quantized in `fmt` (in x's dtype)."""

    def __init__(self, fmt: Format):
        self.fmt = fmt

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt.spec == IDENTITY:
            return x
        return self.fmt.roundtrip(x).to(x.dtype)

    def __repr__(self) -> str:
        return f"<RowQuantizer {self.fmt.spec}>"
