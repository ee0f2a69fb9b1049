"""`quantbench formats`: kernel-level quality of formats on seeded Gaussian data."""
from __future__ import annotations

from quantbench.harness import format_quality

from .common import add_output_option, add_store_options, emit, positive_int, split_list, store


def add_parser(sub) -> None:
    p = sub.add_parser("formats", help="normalized MSE of formats on Gaussian data vs Lloyd-Max and Shannon")
    p.add_argument("--format", default="all", help="comma-separated format specs, or all (default)")
    p.add_argument("--dim", type=positive_int, default=128,
                   help="row length (group size of rotated formats); default 128")
    p.add_argument("--rows", type=positive_int, default=4096, help="seeded N(0,1) rows (default 4096)")
    p.add_argument("--seed", type=int, default=0)
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    rows = format_quality.quality_rows(split_list(args.format), args.rows, args.dim, args.seed)
    emit(rows, format_quality.COLUMNS, args,
         f"Normalized MSE on N(0,1), {args.rows} rows x {args.dim} (lloyd_max: optimum at the whole code bits; "
         "shannon: 4^-bits_per_value)")
    store(format_quality.to_records(rows, args.dim, args.rows), args)
    return 0
