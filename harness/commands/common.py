"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import math
import sys

from quantbench.harness import results as results_store
from quantbench.harness.errors import UserError
from quantbench.harness.tables import OUTPUT_FORMATS, render


def add_output_option(parser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table",
                        help="output format (llama-bench's convention): table, md, csv or json")


def add_store_options(parser, threads: bool = True) -> None:
    """The options of every command that measures and stores records: where the records go and, unless
    `threads` is False (a command whose work runs in another process, or times nothing), `--threads`,
    which the CLI applies before the command runs (harness/threads.set_threads)."""
    parser.add_argument("--results", metavar="PATH", default=None,
                        help="results file to append records to (default: results/<commit>.jsonl; "
                             "$QUANTBENCH_RESULTS sets the folder)")
    parser.add_argument("--no-store", action="store_true", help="print only; store no records")
    if threads:
        parser.add_argument("-t", "--threads", type=positive_int, default=None, metavar="N",
                            help="CPU threads of torch and numba kernels alike (default: their own, the CPU "
                                 "count); numba's limit is NUMBA_NUM_THREADS; recorded in each record's env")


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


DEFAULT_ROUNDS = 5  # bench and run: rounds per case (harness/bench.run_bench)


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (a time budget, a scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number above 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a count, a length)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer of at least 1")
    return value


DEVICE_KINDS = ("cpu", "cuda")


def resolve_device(requested: str | None) -> str:
    """--device: cpu, cuda or cuda:N (default: cuda when available); an unknown or absent device is
    a UserError naming it."""
    import torch

    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise UserError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device")
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
