"""`quantbench landscape`: the seeds' experiment table from the stored verdicts (terminal, markdown,
json), or one self-contained HTML page with the table and its plots (--html)."""
from __future__ import annotations

import sys
from pathlib import Path

from quantbench.harness import results as results_store
from quantbench.harness.experiments import catalog
from quantbench.harness.experiments.landscape import COLUMNS, arm_points, landscape_rows, pareto_points
from quantbench.harness.tables import render
from quantbench.kernels.storage import results_dir, write_atomic


def add_parser(sub) -> None:
    p = sub.add_parser("landscape", help="the experiments' verdicts, confidence and reproductions as one table")
    p.add_argument("--results", metavar="PATH", default=None,
                   help="a results file or folder (default: every results/*.jsonl)")
    p.add_argument("--dir", default=None,
                   help=f"experiment folder whose experiments without a verdict show as 'not run' "
                        f"(default: {catalog.default_dir()})")
    p.add_argument("-o", "--output", choices=("table", "md", "json"), default="table", help="table, md or json")
    p.add_argument("--html", metavar="PATH", default=None,
                   help="also write one self-contained page (no network requests): the table, the KLD-vs-bits "
                        "Pareto plot of every KV policy measured, each experiment's variants against its baseline")
    p.set_defaults(func=run)


def run(args) -> int:
    source = Path(args.results) if args.results else results_dir()
    records = results_store.read_records(source) if source.exists() else []
    rows = landscape_rows(records, catalog.find(args.dir))
    columns = COLUMNS if args.output != "json" else [*COLUMNS, "title", "hypothesis", "kind", "source", "command"]
    if args.output != "json":
        print(f"\nquantbench landscape: {sum(r['result'] != 'not run' for r in rows)} of {len(rows)} experiments "
              f"with verdicts, from {source}\n")
    print(render(rows, columns, args.output))
    if args.html:
        from quantbench.harness.landscape_html import render_landscape_html

        page = render_landscape_html(rows, pareto_points(records), arm_points(rows),
                                     note=f"verdicts from {source}")
        write_atomic(Path(args.html), page.encode("utf-8"))
        print(f"wrote {args.html}", file=sys.stderr)
    return 0
