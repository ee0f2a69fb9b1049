"""Honest timing.

CPU: `perf_counter_ns` around each call, warm-up first, repeats until a time budget is spent.
GPU: CUDA events around each call, L2 flushed before every timed call (the flush is not
timed), optionally the call captured once in a CUDA graph and replayed.
Both report the median, p10/p90 and the relative IQR as noise %, and keep every sample.
Every timed call runs inside an NVTX range named by the case id.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .nvtx_ranges import nvtx_range


@dataclass
class Timing:
    samples_s: list[float] = field(default_factory=list)
    mode: str = "cpu"  # "cpu", "cuda-events", "cuda-graph"
    # the median of each round, when the samples were taken in rounds spread over a whole run
    # (bench.run_bench): their spread is the between-run noise that samples of one burst miss
    rounds: list[float] = field(default_factory=list)
    round_sizes: list[int] = field(default_factory=list)  # samples per round, in order

    @classmethod
    def from_rounds(cls, parts: list["Timing"]) -> "Timing":
        return cls([s for p in parts for s in p.samples_s], parts[0].mode, [p.median for p in parts],
                   [len(p.samples_s) for p in parts])

    def samples_by_round(self) -> list[list[float]]:
        """The samples split into their rounds (one list when they were not taken in rounds)."""
        if not self.round_sizes:
            return [list(self.samples_s)]
        out, at = [], 0
        for size in self.round_sizes:
            out.append(self.samples_s[at:at + size])
            at += size
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.samples_s)

    def quantile(self, q: float) -> float:
        xs = sorted(self.samples_s)
        if len(xs) == 1:
            return xs[0]
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def p10(self) -> float:
        return self.quantile(0.10)

    @property
    def p90(self) -> float:
        return self.quantile(0.90)

    @property
    def noise(self) -> float:
        """Relative interquartile range, as a fraction of the median."""
        med = self.median
        return (self.quantile(0.75) - self.quantile(0.25)) / med if med > 0 else 0.0


@dataclass
class TimingConfig:
    budget_s: float = 0.5  # keep repeating until this much time was spent timing (all rounds together)
    rounds: int = 1  # bench.run_bench times every case in this many rounds, round-robin over the cases
    min_repeats: int = 5
    max_repeats: int = 10_000
    warmup: int = 2
    flush_l2: bool = True
    cuda_graph: bool = False


def time_callable(fn: Callable[[], object], device: str = "cpu", name: str = "",
                  config: TimingConfig | None = None) -> Timing:
    config = config or TimingConfig()
    if device.startswith("cuda"):
        return _time_cuda(fn, name, config)
    return _time_cpu(fn, name, config)


def _time_cpu(fn, name, config: TimingConfig) -> Timing:
    for _ in range(config.warmup):
        fn()
    samples = []
    spent = 0
    budget_ns = config.budget_s * 1e9
    with nvtx_range(name):
        while len(samples) < config.max_repeats and (len(samples) < config.min_repeats or spent < budget_ns):
            start = time.perf_counter_ns()
            fn()
            elapsed = time.perf_counter_ns() - start
            samples.append(elapsed / 1e9)
            spent += elapsed
    return Timing(samples, "cpu")


_L2_FLUSH_BYTES = 256 << 20  # larger than any current GPU's L2 (H100: 50 MB)
_flush_buffer = None


def _flush_l2() -> None:
    global _flush_buffer
    if _flush_buffer is None:
        _flush_buffer = torch.empty(_L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    _flush_buffer.zero_()


def _time_cuda(fn, name, config: TimingConfig) -> Timing:
    run = fn
    mode = "cuda-events"
    if config.cuda_graph:
        run = capture_graph(fn)
        mode = "cuda-graph"
    for _ in range(config.warmup):
        run()
    torch.cuda.synchronize()
    samples = []
    spent = 0.0
    with nvtx_range(name):
        while len(samples) < config.max_repeats and (len(samples) < config.min_repeats or spent < config.budget_s):
            if config.flush_l2:
                _flush_l2()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
            samples.append(elapsed)
            spent += elapsed
    return Timing(samples, mode)


def capture_graph(fn: Callable[[], object]) -> Callable[[], None]:
    """Capture `fn` (static shapes, no host sync inside) in a CUDA graph; return its replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up allocations and autotuning outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
