"""The torch reference codecs: each format's own encode and decode.

These are the baselines every other backend is tested against and compared with.
"""
from __future__ import annotations

from quantbench.kernels.registry import variant


@variant("quantize", backend="torch", name="reference")
def quantize_reference(case):
    """format.encode in torch"""
    fmt, x = case.format_obj, case.inputs()["x"]
    return lambda: fmt.encode(x)


@variant("dequantize", backend="torch", name="reference")
def dequantize_reference(case):
    """format.decode in torch"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"])
    return lambda: fmt.decode(packed, dtype=case.torch_dtype)
