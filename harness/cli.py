"""`quantbench` command line: one module per subcommand in harness/commands/."""
from __future__ import annotations

import argparse
import sys

from quantbench.kernels.formats import FormatError
from quantbench.kernels.registry import Unavailable

from .commands import command_modules
from .errors import UserError
from .results import ResultsError, set_command
from .threads import set_threads

USER_ERRORS = (UserError, FormatError, ResultsError, Unavailable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantbench",
        description="Microbenchmarks, profiling and quality (KLD) for sub-fp16 LLM quantization.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    set_command(["quantbench", *argv])
    try:
        if getattr(args, "threads", None) is not None:  # the measuring commands' --threads (commands/common.py)
            set_threads(args.threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as exc:
        print(f"quantbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"quantbench {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
