"""The torch reference FWHT: the butterfly stages with torch tensor ops."""
from __future__ import annotations

from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.registry import variant


@variant("fwht", backend="torch", name="reference")
def fwht_reference(case):
    """butterfly stages with torch tensor ops"""
    x = case.inputs()["x"]
    return lambda: fwht(x)
