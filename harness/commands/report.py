"""`quantbench report`: the latest tables as markdown and the KLD / bits-per-value Pareto plot."""
from __future__ import annotations

import sys
from pathlib import Path

from quantbench.harness import results as results_store
from quantbench.harness.report import write_report


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="latest results as markdown tables and a Pareto plot of KLD against "
                                      "bits per value (report.md, pareto.png)")
    p.add_argument("--results", metavar="PATH", default=None,
                   help="results file or folder to read (default: the results folder, $QUANTBENCH_RESULTS)")
    p.add_argument("--out", metavar="DIR", default=None, help="folder to write into (default: the results folder)")
    p.set_defaults(func=run)


def run(args) -> int:
    source = Path(args.results) if args.results else results_store.results_dir()
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent)
    md, png = write_report(results_store.read_records(source), out)
    print(f"wrote {md}" + (f" and {png}" if png else " (no quality records: no Pareto plot)"), file=sys.stderr)
    return 0
