"""The verdict: paired block bootstrap, outcomes against the margin and the direction, confidence."""
import numpy as np
import pytest

from quantbench.harness.errors import UserError
from quantbench.harness.experiments.landscape import confidence
from quantbench.harness.experiments.measurement import ArmData, Measurement
from quantbench.harness.experiments.stats import decide, outcome, verdict


def measurement(arms: dict[str, list[np.ndarray]], direction="lower") -> Measurement:
    data = {label: ArmData([{"se": b, "energy": np.ones_like(b), "dim": np.ones_like(b)} for b in blocks])
            for label, blocks in arms.items()}
    return Measurement("format", "nmse", direction, "ratio", "row group", "case", "cpu", data)


def blocks(rng, level, n=8, size=50, spread=0.05):
    return [level * (1 + spread * rng.standard_normal(size)) ** 2 for _ in range(n)]


@pytest.mark.parametrize("lo, hi, direction, expected", [
    (0.10, 0.20, "lower", "worse"), (0.10, 0.20, "higher", "better"), (-0.2, -0.1, "lower", "better"),
    (-0.04, 0.03, "lower", "same"), (0.02, 0.20, "lower", "unclear"), (-0.3, 0.3, "higher", "unclear"),
])
def test_outcome_respects_the_margin_and_the_direction(lo, hi, direction, expected):
    assert outcome(lo, hi, 0.05, direction) == expected


def test_a_paired_comparison_sees_a_small_effect_that_block_noise_would_hide():
    rng = np.random.default_rng(1)
    # blocks differ a lot from each other (some chunks are hard), the variant is 10% worse on each
    levels = rng.uniform(0.5, 5.0, size=8)
    base = [lv * np.ones(40) * (1 + 0.01 * rng.standard_normal(40)) for lv in levels]
    variant = [b * 1.10 for b in base]
    d = decide(measurement({"base": base, "v": variant}), {"v": "worse"}, margin=0.05)
    (arm,) = d.variants
    assert arm.rel_diff == pytest.approx(0.10, abs=1e-9)
    assert 0.05 < arm.ci_low <= arm.ci_high < 0.15 and arm.outcome == "worse" and d.verdict == "success"
    assert d.precision == 3


def test_a_wrong_prediction_is_a_failure_and_an_unclear_one_inconclusive():
    rng = np.random.default_rng(2)
    base, better = blocks(rng, 1.0), blocks(rng, 0.5)
    assert decide(measurement({"b": base, "v": better}), {"v": "worse"}, 0.05).verdict == "failure"
    assert decide(measurement({"b": base, "v": better}), {"v": "better"}, 0.05).verdict == "success"
    same = [b * 1.001 for b in base]
    assert decide(measurement({"b": base, "v": same}), {"v": "worse"}, 0.05).verdict == "failure"
    noisy = [b * rng.uniform(0.5, 1.6) for b in base]
    d = decide(measurement({"b": base, "v": noisy}), {"v": "worse"}, 0.05)
    assert d.variants[0].outcome == "unclear" and d.verdict == "inconclusive"


def test_the_bootstrap_is_seeded_and_a_baseline_only_run_is_a_baseline():
    rng = np.random.default_rng(3)
    m = measurement({"b": blocks(rng, 1.0), "v": blocks(rng, 1.3)})
    first, again = decide(m, {"v": "worse"}, 0.05, seed=4), decide(m, {"v": "worse"}, 0.05, seed=4)
    assert first.variants[0] == again.variants[0]
    other = decide(m, {"v": "worse"}, 0.05, seed=5)
    assert other.variants[0].ci_low != first.variants[0].ci_low
    only = decide(measurement({"b": blocks(rng, 1.0)}), {}, 0.05)
    assert only.verdict == "baseline" and only.baseline_ci[0] < only.baseline.value < only.baseline_ci[1]


def test_a_zero_baseline_or_a_single_block_is_refused():
    zero = [np.zeros(10) for _ in range(4)]
    with pytest.raises(UserError, match="relative difference is undefined"):
        decide(measurement({"b": zero, "v": [z + 1 for z in zero]}), {"v": "worse"}, 0.05)
    with pytest.raises(UserError, match="at least 2 blocks"):
        decide(measurement({"b": [np.ones(5)], "v": [np.ones(5)]}), {"v": "same"}, 0.05)


def test_verdict_and_confidence_rules():
    class V:
        def __init__(self, outcome, expect):
            self.outcome, self.expect = outcome, expect

    assert verdict([V("worse", "worse"), V("worse", "worse")]) == "success"
    assert verdict([V("worse", "worse"), V("unclear", "worse")]) == "inconclusive"
    assert verdict([V("unclear", "worse"), V("better", "worse")]) == "failure"
    assert verdict([]) == "baseline"
    assert confidence(3, 1, 1) == 3 and confidence(3, 3, 3) == 5 and confidence(2, 2, 2) == 3
    assert confidence(3, 1, 2) == 2 and confidence(1, 1, 3) == 1
