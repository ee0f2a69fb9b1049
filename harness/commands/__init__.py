"""Subcommands: every module of this package that defines `add_parser(subparsers)`, which adds
its parser and sets `func` on it. A new command is a new file; helpers shared by the commands
(common.py, weight_options.py) define no `add_parser` and are not commands."""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return [m for m in modules if hasattr(m, "add_parser")]
