"""`quantbench compare`: gate two runs on any metric, each in its own direction."""
from __future__ import annotations

from pathlib import Path

from quantbench.harness import compare as cmp
from quantbench.harness.errors import UserError
from quantbench.harness.tables import render


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare two runs (results files or commits); exit 1 on a regression",
                       description="Compare BASE and NEW row by row (op, format, backend, variant, case, metric): "
                                   "improved, regressed, unchanged or inconclusive, each metric in its own direction.")
    p.add_argument("base", metavar="BASE", help="results file or folder, or a commit (prefix or git ref) in results/")
    p.add_argument("new", metavar="NEW", help="results file or folder, or a commit (prefix or git ref) in results/")
    p.add_argument("--fail", action="append", default=[], metavar="METRIC:THRESHOLD",
                   help="gate METRIC at THRESHOLD, e.g. time:+5%% kld_mean:+10%% decode_tok_s:-5%% or kld_mean:+0.001 "
                        "(absolute); repeatable. Without --fail every metric is gated at --threshold")
    p.add_argument("--threshold", default="5%", help="threshold for every metric when no --fail is given (default 5%%)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the Mann-Whitney U test (default 0.05)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default 0.95)")
    p.add_argument("-o", "--output", choices=("md", "table", "csv", "json"), default="md",
                   help="report format (default md: for a CI log or a PR comment)")
    p.add_argument("--report", metavar="FILE", help="also write the markdown report to FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.alpha < 1 or not 0 < args.confidence < 1:
        raise UserError("--alpha and --confidence must lie strictly between 0 and 1")
    fail = {}
    for text in args.fail:
        metric, threshold = cmp.parse_fail(text)
        fail[metric] = threshold
    comparison = cmp.compare(cmp.load_side(args.base), cmp.load_side(args.new), fail,
                             cmp.parse_threshold(args.threshold), args.alpha, args.confidence)
    if fail and not comparison.rows:
        raise UserError(f"no rows of {', '.join(fail)} are in both {args.base} and {args.new}")
    markdown = cmp.to_markdown(comparison)
    if args.output == "md":
        print(markdown, end="")
    else:
        print(render([r.as_dict() for r in comparison.rows], cmp.COLUMNS, args.output))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(markdown)
    return 1 if comparison.regressed else 0
