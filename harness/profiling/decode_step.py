"""A model's decode step profiled whole (`quantbench throughput --profile torch|nvtx|nsys`): one step at
the given depth inside a `decode_step` NVTX range (and torch `record_function`), its cache write,
attention and weight-matmul sections each in a range of their own, so nsys's kernel time per range gives the
attention versus GEMV share of the step (seed 001 EXP-0047)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from quantbench.harness.nvtx_ranges import nvtx_range

STEP_RANGE = "decode_step"
SECTION_RANGES = ("cache_write", "attention", "matmul")


class RangedSections:
    """The model's `sections` hook: each section inside an NVTX range and a torch record_function."""

    @contextlib.contextmanager
    def section(self, name: str):
        with nvtx_range(name), torch.profiler.record_function(name):
            yield


def _decode_step(model, policy, attn: str, depth: int, seed: int):
    from quantbench.harness.throughput import filled_cache

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(model.config.vocab_size, (1, depth + 2), generator=gen).to(model.device)
    cache = filled_cache(model, policy, attn, tokens[:, :depth], 2)
    model.transformer(tokens[:, depth:depth + 1], cache, depth)  # warm-up, outside the range

    def step():
        with nvtx_range(STEP_RANGE), torch.profiler.record_function(STEP_RANGE):
            model.transformer(tokens[:, depth + 1:depth + 2], cache, depth + 1, RangedSections())
            if model.device.type == "cuda":
                torch.cuda.synchronize()
    return step


def run_ranged_step(model, policy, attn: str, depth: int, seed: int = 0) -> None:
    """One decode step in its NVTX ranges, for a profiler outside this process (nsys)."""
    _decode_step(model, policy, attn, depth, seed)()


def profile_step_with_torch(model, policy, attn: str, depth: int, trace: Path, seed: int = 0) -> list[dict]:
    """torch.profiler over one decode step: the Chrome trace written to `trace`, and the per-operator
    self times (µs), the step's attention and matmul sections among them."""
    from torch.profiler import ProfilerActivity, profile

    step = _decode_step(model, policy, attn, depth, seed)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
    trace.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace))
    rows = [{"operator": e.key, "calls": e.count, "self_cpu_us": e.self_cpu_time_total,
             "cpu_total_us": e.cpu_time_total} for e in prof.key_averages()]
    return sorted(rows, key=lambda r: -r["self_cpu_us"])
