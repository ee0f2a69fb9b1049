"""`quantbench history`: one metric over commits, printed and plotted."""
from __future__ import annotations

import sys
from pathlib import Path

from quantbench.harness import history as hist
from quantbench.harness import results as results_store

from .common import add_output_option, emit, split_list


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="a metric over commits (ordered by record time), as a table and a PNG plot")
    p.add_argument("--metric", required=True, help="metric to follow, e.g. time, decode_tok_s, kld_mean")
    p.add_argument("--format", default="all", help="comma-separated format specs, or all (default)")
    p.add_argument("--op", default="all", help="comma-separated ops, or all (default)")
    p.add_argument("--backend", default="all", help="comma-separated backends, or all (default)")
    p.add_argument("--variant", default="all", help="comma-separated variant names, or all (default)")
    p.add_argument("--case", action="append", help="case (shape) to keep, e.g. rows=12288,dim=64 (repeatable)")
    p.add_argument("--results", metavar="PATH", default=None,
                   help="results file or folder to read (default: the results folder, $QUANTBENCH_RESULTS)")
    p.add_argument("--plot", metavar="FILE", default=None,
                   help="PNG to write (default: <results folder>/history-<metric>[-<format>].png)")
    add_output_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    source = Path(args.results) if args.results else results_store.results_dir()
    formats_wanted = split_list(args.format)
    series = hist.history(results_store.read_records(source), args.metric, formats_wanted,
                          split_list(args.op), split_list(args.backend), split_list(args.variant), args.case)
    emit(hist.rows(series), hist.COLUMNS, args, f"{args.metric} over commits")
    folder = source if source.is_dir() else source.parent
    path = Path(args.plot) if args.plot else hist.default_plot_path(folder, args.metric, formats_wanted)
    hist.plot(series, args.metric, path)
    print(f"wrote {path}", file=sys.stderr)
    return 0
