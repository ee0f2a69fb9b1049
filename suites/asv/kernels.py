"""Kernel benchmarks, generated from the registry: one class per op (TimeQuantize, TimeDequantize,
TimeFwht, ...) with params over variant ("backend/name"), format spec and case shape, from
`harness.suite_cases` (the same list the pytest-benchmark suite runs). A combination that does
not exist, or a variant that cannot run here, is skipped (SkipNotImplemented).

time_kernel: asv's own timing of the no-argument kernel callable; the timer waits for queued GPU
work before reading the clock, so GPU kernels are timed to completion, not to launch.
Each benchmark carries an explicit `benchmark_name` ("kernels.TimeQuantize.time_kernel"): the op
names it, not the Python code.

track_roofline_ratio: the harness's median time (CUDA events and L2 flush on a GPU) divided by
the time the op's bytes take at the copy bandwidth measured in the same run. Lower is better,
1.0 is a kernel at copy bandwidth: the reciprocal of "% of peak", so that asv's regression
detection (which flags increases) is right for it.
"""
import time

import torch
from asv_runner.benchmarks.mark import SkipNotImplemented

from quantbench.harness import timing  # a module-level name time_* would be taken by asv for a benchmark
from quantbench.harness.peak import copy_bandwidth
from quantbench.harness.suite_cases import shape_mode, suite_cases, suite_ops
from quantbench.kernels.registry import Unavailable


def _clock() -> float:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class _KernelSuite:
    op = ""
    cases: dict = {}
    param_names = ["variant", "format", "shape"]
    timer = staticmethod(_clock)
    timeout = 600

    def setup_cache(self):
        """Copy bandwidth per device (bytes/s), measured once per run."""
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        return {device: copy_bandwidth(device) for device in devices}

    def setup(self, peaks, variant, spec, shape):
        suite_case = self.cases.get((variant, spec, shape))
        if suite_case is None:
            raise SkipNotImplemented(f"{self.op}: no variant {variant} for {spec} at {shape}")
        try:
            self.fn, self.case = suite_case.prepare()
        except Unavailable as exc:
            raise SkipNotImplemented(str(exc)) from None
        self.bytes = suite_case.bytes

    def _roofline_ratio(self, peaks, variant):
        budget = 0.05 if shape_mode() == "small" else 0.5
        measured = timing.time_callable(self.fn, self.case.device, f"{self.case.id}/{variant}",
                                       timing.TimingConfig(budget_s=budget))
        return measured.median / (self.bytes / peaks[self.case.device])


def _benchmarks(class_name: str) -> dict:
    """The benchmark methods of one op's class, each with an explicit `benchmark_name` (the name asv
    stores results under), so renaming a Python function or class keeps the benchmark's history."""

    def time_kernel(self, peaks, variant, spec, shape):
        self.fn()

    def track_roofline_ratio(self, peaks, variant, spec, shape):
        return self._roofline_ratio(peaks, variant)

    track_roofline_ratio.unit = "x copy-bandwidth time"
    methods = {"time_kernel": time_kernel, "track_roofline_ratio": track_roofline_ratio}
    for method_name, method in methods.items():
        method.benchmark_name = f"kernels.{class_name}.{method_name}"
    return methods


def _suite_class(op: str, cases: list) -> type:
    by_key = {(f"{c.variant.backend}/{c.variant.name}", c.spec, c.case.shape_id): c for c in cases}
    params = [list(dict.fromkeys(key[i] for key in by_key)) for i in range(3)]
    name = "Time" + "".join(part.title() for part in op.split("_"))
    return type(name, (_KernelSuite,), {"op": op, "cases": by_key, "params": params, **_benchmarks(name),
                                         "__doc__": f"{op}: time and roofline ratio per variant, format, shape"})


def _generate() -> dict[str, type]:
    classes = {}
    for op in suite_ops():
        cases = suite_cases([op])
        if cases:
            cls = _suite_class(op, cases)
            classes[cls.__name__] = cls
    return classes


globals().update(_generate())
