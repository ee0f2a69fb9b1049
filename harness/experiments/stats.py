"""The verdict of an experiment from its measurement.

For each variant, the relative difference d = m(variant) / m(baseline) - 1 of the metric, with a
seeded bootstrap percentile interval: each replicate draws the blocks (chunks, rounds) with
replacement, the same draw for every arm, so the comparison stays paired on the same inputs.

A variant's outcome, with the metric's direction and the margin: `better` or `worse` when the whole
interval lies beyond the margin on that side, `same` when it lies inside +-margin, `unclear`
otherwise. The verdict: `success` when every variant's outcome is the expected one; `failure` when
some variant's outcome is definite and not the expected one (a prediction of `worse` that came out
`same` is wrong too); `inconclusive` otherwise; `baseline` for an experiment with no variants.

Confidence of one run (1..3; the landscape adds reproductions, see landscape.py), from each
interval's half-width h against the margin, or against the effect |d| where the effect is larger
(a +600% +- 100% difference is as settled as a +1% +- 0.5% one under a 5% margin): with
r = max over variants of h / max(margin, |d|), 3 when r <= 1/2, 2 when r <= 1, else 1. A baseline
experiment uses its metric's own interval, relative to its value, against the margin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantbench.harness.errors import UserError

from .kinds import get_kind
from .measurement import Measurement

BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass
class ArmResult:
    label: str
    value: float
    rel_diff: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    expect: str = ""
    outcome: str = ""


@dataclass
class Decision:
    verdict: str
    precision: int  # 1..3, the confidence one run gives
    baseline: ArmResult
    variants: list[ArmResult]
    baseline_ci: tuple[float, float]  # the baseline metric's own interval (absolute)
    per_block: dict[str, list[float]]  # arm label -> the metric of each block alone


def decide(measurement: Measurement, expect: dict[str, str], margin: float, seed: int = 0,
           bootstrap: int = BOOTSTRAP, level: float = LEVEL) -> Decision:
    kind = get_kind(measurement.kind)
    labels = list(measurement.arms)
    base_label, variant_labels = labels[0], labels[1:]
    draws = _draws(measurement.n_blocks, bootstrap, seed)
    values = {label: _replicates(kind, measurement, label, draws) for label in labels}
    point = {label: _value(kind, measurement, label, range(measurement.n_blocks)) for label in labels}
    alpha = (1 - level) / 2
    base_reps = values[base_label]
    baseline = ArmResult(base_label, point[base_label])
    results = []
    for label in variant_labels:
        if point[base_label] == 0 or np.any(base_reps == 0):
            raise UserError(f"{measurement.metric} of the baseline {base_label} is 0: a relative difference "
                            "is undefined; choose another metric or baseline")
        rel = values[label] / base_reps - 1
        lo, hi = (float(q) for q in np.quantile(rel, [alpha, 1 - alpha]))
        arm = ArmResult(label, point[label], point[label] / point[base_label] - 1, lo, hi, expect[label])
        arm.outcome = outcome(lo, hi, margin, measurement.direction)
        results.append(arm)
    b_lo, b_hi = (float(q) for q in np.quantile(base_reps, [alpha, 1 - alpha]))
    if results:
        ratio = max((a.ci_high - a.ci_low) / 2 / max(margin, abs(a.rel_diff)) for a in results)
    else:
        ratio = (b_hi - b_lo) / 2 / abs(point[base_label]) / margin if point[base_label] else 0.0
    per_block = {label: [_value(kind, measurement, label, [i]) for i in range(measurement.n_blocks)]
                 for label in labels}
    return Decision(verdict(results), precision(ratio), baseline, results, (b_lo, b_hi), per_block)


def outcome(lo: float, hi: float, margin: float, direction: str) -> str:
    if -margin <= lo and hi <= margin:
        return "same"
    above, below = lo > margin, hi < -margin
    if direction == "lower":
        above, below = below, above  # a lower value is the better one
    return "better" if above else "worse" if below else "unclear"


def verdict(variants: list[ArmResult]) -> str:
    if not variants:
        return "baseline"
    if all(v.outcome == v.expect for v in variants):
        return "success"
    if any(v.outcome not in ("unclear", v.expect) for v in variants):
        return "failure"
    return "inconclusive"


def precision(ratio: float) -> int:
    """Interval half-width over its scale (margin or effect) -> 3, 2 or 1."""
    return 3 if ratio <= 0.5 else 2 if ratio <= 1 else 1


def _draws(n_blocks: int, bootstrap: int, seed: int) -> np.ndarray:
    if n_blocks < 2:
        raise UserError(f"a bootstrap interval needs at least 2 blocks, the runs gave {n_blocks}: "
                        "measure more chunks (or rounds)")
    return np.random.default_rng(seed).integers(0, n_blocks, size=(bootstrap, n_blocks))


def _value(kind, measurement: Measurement, label: str, blocks) -> float:
    arm = measurement.arms[label]
    if measurement.metric in arm.fixed:
        return float(arm.fixed[measurement.metric])
    chosen = [arm.blocks[i] for i in blocks]
    merged = {name: np.concatenate([b[name] for b in chosen]) for name in chosen[0]}
    return float(kind.statistic(measurement.metric, merged))


def _replicates(kind, measurement: Measurement, label: str, draws: np.ndarray) -> np.ndarray:
    return np.array([_value(kind, measurement, label, row) for row in draws])
