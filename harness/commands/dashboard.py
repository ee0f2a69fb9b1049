"""`quantbench dashboard`: after `asv publish`, make the published dashboard work without internet."""
from __future__ import annotations

import sys

from quantbench.harness.asv_offline import make_offline

DEFAULT_HTML_DIR = "results/html"  # asv.conf.json's html_dir


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="point asv's published pages at local copies of the scripts and styles "
                                         "they load from CDNs (Debian's libjs-* packages, else npm), so the "
                                         "dashboard works offline; run after `asv publish`")
    p.add_argument("--html-dir", metavar="DIR", default=DEFAULT_HTML_DIR,
                   help=f"the folder asv publish wrote (default: {DEFAULT_HTML_DIR}, asv.conf.json's html_dir)")
    p.set_defaults(func=run)


def run(args) -> int:
    plan = make_offline(args.html_dir)
    for line in plan.lines:
        print(line, file=sys.stderr)
    for warning in plan.warnings:
        print(warning, file=sys.stderr)
    if plan.pages:
        print(f"rewrote {len(plan.pages)} page(s) in {args.html_dir} to load {len(plan.lines)} local file(s) "
              f"in {args.html_dir}/vendor instead of CDNs", file=sys.stderr)
    else:
        print(f"{args.html_dir}: no page loads anything from a CDN; nothing to do", file=sys.stderr)
    return 0
