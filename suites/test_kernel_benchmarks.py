"""Every kernel variant on every format and case of its op, timed by pytest-benchmark.

GPU kernels are synchronized inside the timed call, so a sample is the kernel's completion, not
its launch. extra_info carries what pytest-benchmark cannot derive: the op's bytes, GB/s and % of
the measured copy bandwidth (from the median), and the format's exact bits per value.
"""
import pytest

from quantbench.harness.suite_cases import synchronized
from quantbench.kernels.registry import Unavailable


def test_kernel(benchmark, suite_case, copy_bandwidth):
    try:
        fn, case = suite_case.prepare()
    except Unavailable as exc:
        pytest.skip(f"unavailable: {exc}")
    variant = suite_case.variant
    benchmark.group = f"{case.op} {suite_case.spec} {case.shape_id}"
    benchmark.extra_info.update(op=case.op, format=suite_case.spec, backend=variant.backend, variant=variant.name,
                                case=case.shape_id, device=case.device, bytes=suite_case.bytes,
                                bits_per_value=suite_case.bits_per_value)
    benchmark(synchronized(fn, case.device))
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["gbps"] = suite_case.bytes / median / 1e9
        benchmark.extra_info["pct_peak"] = 100 * suite_case.bytes / median / copy_bandwidth(case.device)
