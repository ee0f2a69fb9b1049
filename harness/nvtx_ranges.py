"""NVTX ranges named by case id, so nsys timelines read without a legend.

Uses the `nvtx` package where it is installed and does nothing where it is not (the ranges only
matter under a profiler, and a missing package must not stop a benchmark).
"""
from __future__ import annotations

import contextlib

try:
    import nvtx as _nvtx
except ImportError:  # degrade: benchmarks still run, timelines just lose their labels
    _nvtx = None


def nvtx_available() -> bool:
    return _nvtx is not None


def nvtx_range(name: str):
    if _nvtx is None or not name:
        return contextlib.nullcontext()
    return _nvtx.annotate(name, domain="quantbench")
