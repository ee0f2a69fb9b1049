"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import sys

from quantbench.harness import results as results_store
from quantbench.harness.tables import OUTPUT_FORMATS, render


def add_output_option(parser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table",
                        help="output format (llama-bench's convention): table, md, csv or json")


def add_store_options(parser) -> None:
    parser.add_argument("--results", metavar="PATH", default=None,
                        help="results file to append records to (default: results/<commit>.jsonl; "
                             "$QUANTBENCH_RESULTS sets the folder)")
    parser.add_argument("--no-store", action="store_true", help="print only; store no records")


def split_list(text: str | None) -> list[str] | None:
    """'a,b,c' -> ['a','b','c']; None or 'all' -> None (meaning everything)."""
    if text is None or text.strip().lower() == "all":
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def store(records: list[dict], args) -> None:
    if args.no_store or not records:
        return
    path = results_store.append(records, args.results)
    print(f"stored {len(records)} records in {path}", file=sys.stderr)


def emit(rows: list[dict], columns: list[str], args, title: str | None = None) -> None:
    if title and args.output in ("table", "md"):
        print(f"\n{title}\n")
    print(render(rows, columns, args.output))
