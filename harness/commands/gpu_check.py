"""`quantbench gpu-check`: the prepared validation run of a CUDA machine (harness/gpu_check.py); its
records go under results/ with the device named. Without a CUDA device: one line, exit 1."""
from __future__ import annotations

import sys
import time

from quantbench.harness import gpu_check
from quantbench.harness.errors import UserError

from .common import add_output_option, add_store_options, emit, split_list, store


def add_parser(sub) -> None:
    p = sub.add_parser("gpu-check", help="the prepared GPU validation: copy bandwidth, correctness of every GPU "
                                         "variant, 32K decode attention, fused GEMV, codebook placements, "
                                         "eager vs CUDA-graph decode, one ncu run")
    p.add_argument("--steps", default="all", help=f"comma-separated subset of {', '.join(gpu_check.STEPS)}")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    steps = split_list(args.steps) or list(gpu_check.STEPS)
    unknown = [s for s in steps if s not in gpu_check.STEPS]
    if unknown:
        raise UserError(f"--steps: unknown step {', '.join(unknown)}; known: {', '.join(gpu_check.STEPS)}")
    reason = gpu_check.no_gpu_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    failed = False
    for name in steps:
        started = time.perf_counter()
        result = gpu_check.STEPS[name]()
        failed |= result.status.startswith("failed")
        if result.rows:
            emit(result.rows, list(result.rows[0]), args,
                 f"gpu-check {name}: {result.status} ({time.perf_counter() - started:.0f} s)")
        else:
            print(f"gpu-check {name}: {result.status}", file=sys.stderr)
        store(result.records, args)
    return 1 if failed else 0
