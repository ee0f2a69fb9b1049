"""Kernel-level quality of every format: normalized MSE on seeded Gaussian rows, printed beside
the Lloyd-Max optimum for the format's whole code bits and the Shannon bound 4^-b at its exact
bits per value (side data included)."""
from __future__ import annotations

import math
import sys

import torch

from quantbench.kernels import formats
from quantbench.kernels.formats.lloyd_max import gaussian_mse, shannon_bound

from . import results as results_store

COLUMNS = ["format", "bits_per_value", "nmse", "lloyd_max", "shannon", "nmse_over_shannon"]


def normalized_mse(spec: str, rows: int = 4096, dim: int = 128, seed: int = 0) -> float:
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    fmt = formats.get(spec)
    packed = fmt.encode(x)
    if packed.scale_underflow:
        print(f"warning: {spec}: {packed.scale_underflow} blocks had an fp16 scale that underflowed "
              "(their values decode to zero or to the block minimum)", file=sys.stderr)
    y = fmt.decode(packed).double()
    x = x.double()
    return float(((y - x) ** 2).sum() / (x ** 2).sum())


def quality_rows(specs: list[str] | None = None, rows: int = 4096, dim: int = 128, seed: int = 0) -> list[dict]:
    if specs is None:
        specs = [name for name in formats.names() if formats.get(name).holds(dim)]
        left_out = [name for name in formats.names() if name not in specs]
        if left_out:
            print(f"formats: {', '.join(left_out)} cannot hold rows of {dim} values; left out "
                  f"(--dim 256 includes llama.cpp's k-quants)", file=sys.stderr)
    out = []
    for spec in specs:
        fmt = formats.get(spec)
        bits = fmt.bits_per_value_for(dim)
        nmse = normalized_mse(spec, rows, dim, seed)
        code_bits = math.floor(bits)
        out.append({
            "format": spec, "bits_per_value": bits, "nmse": nmse,
            "lloyd_max": gaussian_mse(code_bits) if 1 <= code_bits <= 8 else None,
            "shannon": shannon_bound(bits),
            "nmse_over_shannon": nmse / shannon_bound(bits),
        })
    return out


def to_records(rows: list[dict], dim: int, n_rows: int) -> list[dict]:
    return [results_store.make_record(
        op="format_quality", format=r["format"], backend="torch", variant="reference",
        case=f"gaussian,rows={n_rows},dim={dim}", metric="nmse", value=r["nmse"], unit="ratio",
        direction="lower") for r in rows]
