"""The torch reference variants: each format's own encode/decode, and the butterfly FWHT.

These are the baselines every other backend is tested against and compared with.
"""
from __future__ import annotations

from quantbench.harness.registry import variant

from .rotation import fwht


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


@variant("fwht", backend="torch", name="reference")
def fwht_reference(case):
    """butterfly stages with torch tensor ops"""
    x = case.inputs()["x"]
    return lambda: fwht(x)
