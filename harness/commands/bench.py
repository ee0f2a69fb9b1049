"""`quantbench bench`: time variants of one op over formats and shapes."""
from __future__ import annotations

from quantbench.harness.bench import COLUMNS, run_bench, select, to_records
from quantbench.harness.errors import UserError
from quantbench.harness.timing import TimingConfig
from quantbench.kernels.registry import Case, get_op

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


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the variants of an op (time, GB/s, %% of measured peak)")
    p.add_argument("--op", required=True, help="op to benchmark (see `quantbench list`)")
    p.add_argument("--format", default="all", help="comma-separated format specs, or all (default)")
    p.add_argument("--backend", default="all", help="comma-separated backends (torch,numba,triton,cuda), or all")
    p.add_argument("--variant", default="all", help="comma-separated variant names, or all")
    p.add_argument("--shape", action="append", metavar="K=V,...",
                   help="case dimensions, e.g. rows=4096,dim=128 (repeatable; default: the op's own cases)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="float dtype of the unpacked side (default float32; ops that take only float32 say so)")
    p.add_argument("--budget", type=positive_float, default=0.5, help="seconds of timing per case (default 0.5)")
    p.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS,
                   help=f"rounds each case is timed in, round-robin over the cases, so that their spread shows "
                        f"the between-run noise `compare` gates on (default {DEFAULT_ROUNDS})")
    p.add_argument("--cuda-graph", action="store_true", help="on a GPU, replay each call from a CUDA graph")
    p.add_argument("--no-validate", action="store_true", help="skip the one-off check against the reference")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def parse_shape(text: str) -> dict[str, int]:
    dims = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip().isdigit() or int(value) <= 0:
            raise UserError(f"--shape {text!r}: expected positive integers as key=value, e.g. rows=4096,dim=128")
        if key.strip() in dims:
            raise UserError(f"--shape {text!r}: {key.strip()} given twice")
        dims[key.strip()] = int(value)
    return dims


def run(args) -> int:
    try:
        op = get_op(args.op)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    pairs = select(args.op, split_list(args.format), split_list(args.backend), split_list(args.variant))
    if not pairs:
        raise UserError(f"no variant of {args.op} matches --format {args.format} --backend {args.backend} "
                        f"--variant {args.variant}")
    cases_for = None
    if args.shape:
        shapes = [parse_shape(s) for s in args.shape]
        for dims in shapes:
            op.check_dims(dims, args.dtype)
        cases_for = lambda spec: [Case.make(op.name, spec, dtype=args.dtype, **dims) for dims in shapes]
    elif args.dtype != "float32":
        op.check_dims(dict(op.default_cases(pairs[0][1])[0].dims), args.dtype)
        cases_for = lambda spec: [Case.make(op.name, spec, dtype=args.dtype, **dict(c.dims))
                                  for c in op.default_cases(spec)]
    config = TimingConfig(budget_s=args.budget, rounds=args.rounds, cuda_graph=args.cuda_graph)
    results = run_bench(args.op, pairs, cases_for, config, validate=not args.no_validate)
    if all(r.status.startswith("skipped") for r in results):
        reasons = sorted({r.status.removeprefix("skipped: ") for r in results})
        raise UserError("no case can run: " + "; ".join(reasons))
    emit([r.row() for r in results], COLUMNS, args)
    store(to_records(results), args)
    return 1 if any(r.status.startswith("failed") for r in results) else 0
