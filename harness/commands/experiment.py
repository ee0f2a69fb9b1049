"""`quantbench experiment run|list`: run experiment files (hypothesis, baseline, variants, expected
direction) and print one verdict row per experiment; list the experiments of a folder."""
from __future__ import annotations

import sys
import time
import tomllib

from quantbench.harness.errors import UserError
from quantbench.harness.experiments import ENGINES, Task, catalog, conclude, run_tasks
from quantbench.harness.tables import render

from .common import add_store_options, positive_int, store

RUN_COLUMNS = ["id", "verdict", "confidence", "metric", "detail", "case"]
LIST_COLUMNS = ["id", "kind", "metric", "title", "source", "file"]
OUTPUTS = ("table", "md", "json")


def add_parser(sub) -> None:
    p = sub.add_parser("experiment", help="run experiment files and print their verdicts; list experiments")
    actions = p.add_subparsers(dest="action", required=True)
    run = actions.add_parser(
        "run", help="run experiments (files or IDs) and print one verdict row each",
        description="Each experiment's baseline and variants are measured on the same inputs; the verdict comes "
                    "from a seeded bootstrap interval of each variant's relative difference. A setting changed here "
                    "(--ctx, --seed, --corpus, --model, or another machine) makes an independent reproduction.")
    run.add_argument("experiments", nargs="*", metavar="FILE|ID", help="experiment files, or IDs looked up in --dir")
    run.add_argument("--all", action="store_true", help="every experiment in --dir")
    _add_dir(run)
    for flag in ("ctx", "chunks", "seed"):
        run.add_argument(f"--{flag}", type=positive_int if flag != "seed" else int, default=None,
                         help=f"override the experiments' [run] {flag}")
    run.add_argument("--model", default=None, help="override [run] model (a GGUF file or Hugging Face folder)")
    run.add_argument("--corpus", default=None, help="override [run] corpus (a UTF-8 text file)")
    run.add_argument("--device", default=None, help="override [run] device (cpu, cuda)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any [run] setting, the value in TOML syntax: --set attn='\"native\"' "
                          "or --set attn=native (repeatable)")
    run.add_argument("--engine", choices=ENGINES, default="local",
                     help="local: in this process (default); ray: one Ray task per experiment and configuration")
    run.add_argument("--address", default=None,
                     help="with --engine ray: the cluster to join (default: start a local one)")
    run.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table, md or json")
    add_store_options(run)
    run.set_defaults(func=run_command)
    listing = actions.add_parser("list", help="the experiments of a folder")
    _add_dir(listing)
    listing.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table, md or json")
    listing.set_defaults(func=list_command)


def _add_dir(p) -> None:
    p.add_argument("--dir", default=None, help=f"experiment folder (default: {catalog.default_dir()})")


def overrides(args) -> dict:
    out = {k: getattr(args, k) for k in ("ctx", "chunks", "seed", "model", "corpus", "device")
           if getattr(args, k) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = _value(value.strip())
    return out


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def run_command(args) -> int:
    if args.all == bool(args.experiments):
        raise UserError("name experiments (files or IDs) or give --all, not both")
    chosen = ([(e.id, e) for e in catalog.find(args.dir)] if args.all
              else catalog.resolve(args.experiments, args.dir))
    if not chosen:
        raise UserError(f"no experiment in {args.dir or catalog.default_dir()}")
    extra = overrides(args)
    tasks = [Task.make(e, extra, _reference(ref, e, args)) for ref, e in chosen]
    started = time.perf_counter()
    results = run_tasks(tasks, args.engine, args.address)
    rows, records = [], []
    for result in results:
        row, recs = conclude(result)
        rows.append(row)
        records += recs
    print(f"{len(tasks)} experiment(s) in {time.perf_counter() - started:.1f} s ({args.engine} engine)",
          file=sys.stderr)
    print(render(rows, RUN_COLUMNS, args.output))
    store(records, args)
    return 1 if any(r["verdict"].startswith("error") for r in rows) else 0


def _reference(ref: str, experiment, args) -> tuple[str, ...]:
    """How the stored command names the experiment: its file when it was given (or found in --dir by
    --all), else its ID (with the --dir it was found in)."""
    if experiment.path is not None and (ref.endswith(".toml") or args.all and args.dir):
        return (str(experiment.path),)
    return (experiment.id,) if args.dir is None else (experiment.id, "--dir", args.dir)


def list_command(args) -> int:
    rows = [{"id": e.id, "kind": e.kind, "metric": e.metric, "title": e.title, "source": e.source,
             "file": e.path.name if e.path else ""} for e in catalog.find(args.dir)]
    print(render(rows, LIST_COLUMNS, args.output))
    return 0
