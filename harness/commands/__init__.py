"""Subcommands. Each module defines `add_parser(subparsers)`, which sets `func` on its parser."""

COMMANDS = [
    "list",
    "bench",
    "run",
    "formats",
    "compare", "history", "report",
    "throughput",
    "quality",
    "tcq_sweep",
    "sensitivity",
]
