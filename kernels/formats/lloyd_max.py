"""Lloyd-Max scalar quantizers for the standard Gaussian, computed (not pasted).

Lloyd's iteration alternates the two optimality conditions: each boundary is the midpoint of
its neighbouring levels, each level the conditional mean of N(0,1) on its cell,
E[X | a < X < b] = (phi(a) - phi(b)) / (Phi(b) - Phi(a)).  Iterated until no level moves by
more than `tol`. Scale the levels by sigma for N(0, sigma^2) (TurboQuant uses sigma = 1/sqrt(g)).
"""
from __future__ import annotations

import functools
import math

import torch


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@functools.lru_cache(maxsize=None)
def gaussian_levels(bits: int, tol: float = 1e-10, max_iter: int = 100_000) -> tuple[float, ...]:
    """Sorted reconstruction levels of the 2**bits-level Lloyd-Max quantizer of N(0,1)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"Lloyd-Max codebook: bits must be 1..8, got {bits}")
    n = 1 << bits
    levels = [(-1 + (2 * i + 1) / n) * 2.5 for i in range(n)]
    for _ in range(max_iter):
        bounds = [-math.inf] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [math.inf]
        new = [
            (_pdf(lo) - _pdf(hi)) / max(_cdf(hi) - _cdf(lo), 1e-300)
            for lo, hi in zip(bounds, bounds[1:])
        ]
        moved = max(abs(a - b) for a, b in zip(new, levels))
        levels = new
        if moved < tol:
            return tuple(levels)
    raise RuntimeError(f"Lloyd-Max iteration for {bits} bits did not converge to {tol}")


def gaussian_mse(bits: int) -> float:
    """Mean squared error of the Lloyd-Max quantizer on N(0,1), by numerical integration."""
    levels = gaussian_levels(bits)
    bounds = [-math.inf] + [(a + b) / 2 for a, b in zip(levels, levels[1:])] + [math.inf]
    total = 0.0
    for c, lo, hi in zip(levels, bounds, bounds[1:]):
        # E[(X-c)^2 ; lo<X<hi] = E[X^2;cell] - 2c E[X;cell] + c^2 P(cell)
        p = _cdf(hi) - _cdf(lo)
        m1 = _pdf(lo) - _pdf(hi)
        lo_t = lo * _pdf(lo) if math.isfinite(lo) else 0.0
        hi_t = hi * _pdf(hi) if math.isfinite(hi) else 0.0
        m2 = p + lo_t - hi_t
        total += m2 - 2 * c * m1 + c * c * p
    return total


def codebook(bits: int, sigma: float = 1.0) -> torch.Tensor:
    """float32 levels for N(0, sigma^2)."""
    return torch.tensor(gaussian_levels(bits), dtype=torch.float64).mul(sigma).to(torch.float32)


def boundaries(bits: int, sigma: float = 1.0) -> torch.Tensor:
    """float32 decision thresholds (midpoints), length 2**bits - 1, for torch.bucketize."""
    lv = torch.tensor(gaussian_levels(bits), dtype=torch.float64)
    return ((lv[1:] + lv[:-1]) / 2).mul(sigma).to(torch.float32)


def shannon_bound(bits: float) -> float:
    """Distortion-rate bound of a unit-variance Gaussian source: D(R) = 4**-R."""
    return 4.0 ** (-bits)
