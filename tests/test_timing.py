import time

from quantbench.harness.timing import Timing, TimingConfig, time_callable


def test_statistics_of_known_samples():
    t = Timing([1.0, 2.0, 3.0, 4.0, 5.0])
    assert t.median == 3.0
    assert t.p10 == 1.4
    assert t.p90 == 4.6
    assert t.noise == (4.0 - 2.0) / 3.0


def test_cpu_timing_measures_the_call_and_keeps_samples():
    calls = []

    def sleepy():
        calls.append(1)
        time.sleep(0.002)

    t = time_callable(sleepy, "cpu", "sleep", TimingConfig(budget_s=0.02, min_repeats=5, warmup=2))
    assert len(t.samples_s) >= 5
    assert len(calls) == len(t.samples_s) + 2  # warm-up calls are not timed
    assert 0.002 <= t.median < 0.05
    assert t.mode == "cpu"


def test_repeats_stop_at_max():
    t = time_callable(lambda: None, "cpu", "", TimingConfig(budget_s=10, min_repeats=1, max_repeats=7, warmup=0))
    assert len(t.samples_s) == 7
