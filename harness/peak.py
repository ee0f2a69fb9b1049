"""Peak memory bandwidth, measured on the device in the same run (never a constant).

A large tensor copy: bytes read plus bytes written, divided by the median copy time. The
buffers are far larger than any cache level, so this is the sustained DRAM (or HBM) rate a
bandwidth-bound kernel can hope for.
"""
from __future__ import annotations

import functools
import os

import torch

from .timing import TimingConfig, time_callable

COPY_BYTES = int(os.environ.get("QUANTBENCH_PEAK_BYTES", 256 << 20))


@functools.lru_cache(maxsize=None)
def copy_bandwidth(device: str = "cpu") -> float:
    """Measured copy bandwidth in bytes/s (read + write) on `device`."""
    n = COPY_BYTES // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_callable(lambda: dst.copy_(src), device, "peak/copy",
                           TimingConfig(budget_s=0.5, min_repeats=5, warmup=2))
    return 2 * n * 4 / timing.median
