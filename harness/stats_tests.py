"""Two-sample statistics for comparing runs: the Mann-Whitney U test (normal approximation with
tie and continuity corrections) and a bootstrap confidence interval of the ratio of medians
(or means).

Both are small and self-contained so the suite needs no scipy; the bootstrap uses a fixed seed,
so the same two sample sets always give the same interval.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
_CHUNK_VALUES = 1 << 22  # resample in chunks of about this many values to bound memory


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of `a`, two-sided p-value) for the hypothesis that a and b come from one distribution."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one sample on each side")
    pooled = list(a) + list(b)
    rank_sum = sum(ranks(pooled)[:n1])
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = sum(t ** 3 - t for t in Counter(pooled).values())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every value equal: no evidence of any difference
        return u, 1.0
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(variance)
    return u, math.erfc(z / math.sqrt(2))


STATISTICS = {"median": np.median, "mean": np.mean}


def bootstrap_ratio(base: Sequence[float], new: Sequence[float], statistic: str = "median", confidence: float = 0.95,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(new) / statistic(base), resampling each side."""
    if not base or not new:
        raise ValueError("bootstrap needs at least one sample on each side")
    reduce = STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    base_arr, new_arr = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    ratios = []
    chunk = max(1, _CHUNK_VALUES // max(len(base_arr), len(new_arr)))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        base_stat = reduce(base_arr[rng.integers(0, len(base_arr), (k, len(base_arr)))], axis=1)
        new_stat = reduce(new_arr[rng.integers(0, len(new_arr), (k, len(new_arr)))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(new_stat / base_stat)
    ratios = np.concatenate(ratios)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return float(lo), float(hi)
