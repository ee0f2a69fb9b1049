"""`quantbench run`: the default suite on this machine, on the embedded default model.

Four parts, each printed as its own table and stored as records: format quality on Gaussian data,
kernel microbenchmarks at the embedded model's shapes, KV-cache quality (KL divergence) of the
model, and its prefill/decode throughput; then a summary of what the run found
(harness/run_summary.py). Kernel variants that cannot run here are folded into one line per
backend and reason (`--full`: a row each). Sized to finish in about 3 minutes on a 2-core CPU;
the dedicated commands (`bench`, `quality`, `throughput`) go further.
"""
from __future__ import annotations

import sys
import time

from quantbench.harness import contention, format_quality, numba_warmup, run_summary, threads, throughput
from quantbench.harness.bench import COLUMNS, run_bench, select, to_records
from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model, parse_kv_policy
from quantbench.harness.model.kv_cache import cache_problem
from quantbench.harness.quality import TABLE_COLUMNS, quality_records, quality_table
from quantbench.harness.timing import TimingConfig
from quantbench.kernels import formats as formats_registry
from quantbench.kernels.registry import OPS, load_all

from .common import (
    DEFAULT_ROUNDS,
    add_output_option,
    add_store_options,
    emit,
    positive_float,
    positive_int,
    split_list,
    store,
)

PARTS = ("formats", "kernels", "quality", "throughput")
QUALITY_SKIP = ("f32", "bf16")  # KL divergence of every other registered format, as a KV cache
QUALITY_CTX = 512
THROUGHPUT_KV = "f16,q8_0,q4_0,turbo3"
THROUGHPUT_ATTN = "auto"  # the faster backend per call (harness/model/attention/auto.py)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="the default suite: format quality, kernel microbenchmarks, KV-cache KL "
                                   "divergence and tokens/s of the embedded model")
    p.add_argument("--parts", default="all", help=f"comma-separated subset of {', '.join(PARTS)} (default all)")
    p.add_argument("--budget", type=positive_float, default=0.2, help="seconds of timing per kernel case (default 0.2)")
    p.add_argument("--full", action="store_true", help="a row for every kernel variant, unavailable ones included")
    p.add_argument("--chunks", type=positive_int, default=1,
                   help=f"corpus chunks of {QUALITY_CTX} tokens scored for KL divergence "
                        "(default 1; `quality` defaults to 8)")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    parts = split_list(args.parts) or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UserError(f"--parts: unknown part {', '.join(unknown)}; known: {', '.join(PARTS)}")
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    found = {"kernels": [], "quality": [], "throughput": []}

    def timed(part, fn, *a):
        begin = time.perf_counter()
        out = fn(*a)
        seconds[part] = time.perf_counter() - begin
        return out

    failed = False
    if "formats" in parts:
        timed("formats", run_formats, args)
    if "kernels" in parts:
        failed |= timed("kernels", run_kernels, args, found["kernels"])
    if "quality" in parts or "throughput" in parts:
        model = load_model()
        if "quality" in parts:
            found["quality"] = timed("quality", run_quality, model, args)
        if "throughput" in parts:
            found["throughput"] = timed("throughput", run_throughput, model, args)
    summary = run_summary.closing_summary(found["kernels"], found["quality"], found["throughput"])
    if summary and args.output in ("table", "md"):
        print("\nWhat this run found\n\n" + "\n".join(summary))
    split = ", ".join(f"{part} {s:.0f} s" for part, s in seconds.items())
    print(f"quantbench run: {time.perf_counter() - started:.0f} s ({split})", file=sys.stderr)
    return 1 if failed else 0


def run_formats(args) -> None:
    rows = format_quality.quality_rows(dim=64)
    emit(rows, format_quality.COLUMNS, args, "Format quality: normalized MSE on N(0,1) rows of 64 (head_dim)")
    store(format_quality.to_records(rows, 64, 4096), args)


def run_kernels(args, found: list[dict]) -> bool:
    """Every variant of each kernel op at its default cases; True when one gave a wrong result.
    The rows that ran are appended to `found`."""
    load_all()
    failed = False
    ops = [o for o in OPS.values() if o.in_run]
    numba_warmup.warm(ops)
    for op in ops:
        print(f"kernels: {op.name}", file=sys.stderr, flush=True)
        config = TimingConfig(budget_s=args.budget, rounds=DEFAULT_ROUNDS)
        results = run_bench(op.name, select(op.name, op.run_specs(), None), config=config, cases_for=op.run_cases)
        rows = [r.row() for r in results]
        shown, folded = (rows, []) if args.full else run_summary.fold_unavailable(rows)
        emit(shown, COLUMNS, args, f"Kernels: {op.name} ({threads.describe()})")
        if folded and args.output in ("table", "md"):
            print("\nunavailable here:\n" + "\n".join(f"  {line}" for line in folded))
        store(to_records(results), args)
        found += rows
        failed |= any(r.status.startswith("failed") for r in results)
    return failed


def run_quality(model, args) -> list[dict]:
    specs = []
    for name in formats_registry.names():
        problem = None if name in QUALITY_SKIP else cache_problem(formats_registry.get(name), model.config.head_dim)
        if problem:
            print(f"quality: {name} is not measured as a KV cache: {problem}", file=sys.stderr)
        elif name not in QUALITY_SKIP:
            specs.append(name)
    policies = [parse_kv_policy(spec, n_layers=model.config.n_layers) for spec in specs]
    rows = quality_table(model, policies, ctx=QUALITY_CTX, chunks=args.chunks)
    emit(rows, TABLE_COLUMNS, args, f"KV-cache quality: KL divergence vs the unquantized cache, "
                                    f"{rows[0]['case']}, {rows[0]['n_tokens']} scored tokens")
    store(quality_records(rows), args)
    return rows


def run_throughput(model, args) -> list[dict]:
    policies = [parse_kv_policy(spec, n_layers=model.config.n_layers) for spec in THROUGHPUT_KV.split(",")]
    rows = throughput.run_throughput(model, policies, n_prompt=[128], n_gen=[8], depths=[0, 1024], repetitions=3,
                                     attn=THROUGHPUT_ATTN)
    table = [r.row() for r in rows]
    emit(table, throughput.COLUMNS, args,
         f"Throughput: prefill (pp) and decode (tg) tokens/s, batch 1, median of 3, attention {THROUGHPUT_ATTN}, "
         f"{threads.describe()}")
    records = throughput.to_records(rows)
    contention.flag(records)
    store(records, args)
    return table
