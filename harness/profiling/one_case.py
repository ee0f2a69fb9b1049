"""The child `quantbench profile` runs under the tool: one case of one variant, built and checked
against the reference outside the range, then called `--calls` times inside one NVTX range (and,
with `--torch-trace`, one torch.profiler `record_function` of the same name).

    python -m quantbench.harness.profiling.one_case --op attn_decode --format turbo3 --backend triton \\
        --variant native --shape batch=1,heads=32,kv_heads=8,n=1,ctx=32768,dim=128 --calls 3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from quantbench.harness.nvtx_ranges import nvtx_range
from quantbench.kernels.registry import Case, find_variant, get_op

DOMAIN = "quantbench"  # the NVTX domain of every quantbench range (harness/nvtx_ranges.py)


def range_name(op: str, spec: str, shape_id: str, backend: str, variant: str) -> str:
    """The case's NVTX range, the same on any device: no '/' or '@', which ncu and nsys read as range
    nesting and domains."""
    return f"{op}[{spec}]({shape_id}):{backend}.{variant}".replace("/", "|").replace("@", "_")


def build_case(op: str, spec: str, backend: str, name: str, dims: dict[str, int]):
    """(case on its run device, variant, callable), the output checked once against the reference."""
    op_obj = get_op(op)
    variant = find_variant(op, spec, backend, name)
    case = Case.make(op, spec, **dims)
    op_obj.check_case(case)
    case = case.with_device(variant.run_device())
    fn = variant.build(case)
    if op_obj.check:
        op_obj.check(case, fn(), op_obj.reference(case))
    return case, variant, fn


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_in_range(fn, device: str, name: str, calls: int) -> None:
    fn()  # warm-up (compilation, autotuning) outside the range
    _synchronize(device)
    with nvtx_range(name):
        for _ in range(calls):
            fn()
        _synchronize(device)


def profile_with_torch(fn, device: str, name: str, calls: int, trace: Path) -> list[dict]:
    """Chrome/Perfetto trace written to `trace`; per-operator self times (µs) of the profiled calls."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    fn()
    _synchronize(device)
    with profile(activities=activities) as prof:
        with record_function(name), nvtx_range(name):
            for _ in range(calls):
                fn()
            _synchronize(device)
    prof.export_chrome_trace(str(trace))
    rows = []
    for event in prof.key_averages():
        row = {"operator": event.key, "calls": event.count, "self_cpu_us": event.self_cpu_time_total,
               "cpu_total_us": event.cpu_time_total}
        if device.startswith("cuda"):
            row["self_device_us"] = getattr(event, "self_device_time_total", 0.0)
        rows.append(row)
    return sorted(rows, key=lambda r: -r["self_cpu_us"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantbench.harness.profiling.one_case")
    for flag in ("--op", "--format", "--backend", "--variant", "--shape"):
        p.add_argument(flag, required=True)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--torch-trace", type=Path, help="profile with torch.profiler; write the trace here")
    p.add_argument("--torch-table", type=Path, help="the per-operator self times, as JSON (with --torch-trace)")
    args = p.parse_args(argv)
    dims = {k: int(v) for k, v in (part.split("=") for part in args.shape.split(","))}
    case, variant, fn = build_case(args.op, args.format, args.backend, args.variant, dims)
    name = range_name(args.op, args.format, case.shape_id, variant.backend, variant.name)
    if args.torch_trace:
        table = profile_with_torch(fn, case.device, name, args.calls, args.torch_trace)
        args.torch_table.write_text(json.dumps({"range": name, "device": case.device, "operators": table}))
    else:
        run_in_range(fn, case.device, name, args.calls)
    print(f"profiled {name} x{args.calls}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
