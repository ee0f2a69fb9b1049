"""`quantbench run`: the default suite on this machine, on the embedded default model."""
from __future__ import annotations

import sys

from quantbench.harness import format_quality
from quantbench.harness.bench import COLUMNS, run_bench, select, to_records
from quantbench.harness.timing import TimingConfig

from .common import add_output_option, add_store_options, emit, store

KERNEL_OPS = ("quantize", "dequantize", "fwht")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="the default suite: format quality, kernel microbenchmarks at the embedded "
                                   "model's KV shapes and head_dim 128")
    p.add_argument("--budget", type=float, default=0.2, help="seconds of timing per kernel case (default 0.2)")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    rows = format_quality.quality_rows(dim=64)
    emit(rows, format_quality.COLUMNS, args, "Format quality: normalized MSE on N(0,1) rows of 64 (head_dim)")
    store(format_quality.to_records(rows, 64, 4096), args)

    failed = False
    for op in KERNEL_OPS:
        print(f"kernels: {op}", file=sys.stderr, flush=True)
        results = run_bench(op, select(op, None, None), config=TimingConfig(budget_s=args.budget))
        emit([r.row() for r in results], COLUMNS, args, f"Kernels: {op}")
        store(to_records(results), args)
        failed |= any(r.status.startswith("failed") for r in results)
    return 1 if failed else 0
