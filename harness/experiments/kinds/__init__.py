"""Experiment kinds: every module of this package is one kind, named after it (kv, weights, kernel,
format). A new kind is a new file defining:

    MAIN                          the arm setting a plain string names ("kv", "weights", ...)
    DEFAULTS                      the run settings and their defaults
    validate(experiment, where)   raise ExperimentError for settings the kind cannot run
    facts(config) -> dict         what `requires` is checked against (device, head_dim, arch, ...)
    measure(experiment, config, progress) -> Measurement
    statistic(metric, arrays) -> float   the metric of merged blocks
    direction(metric) -> (unit, "lower" | "higher")
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from ..errors import ExperimentError


@cache
def kinds() -> dict[str, ModuleType]:
    return {info.name: importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)}


def get_kind(name: str, where: str = "experiment") -> ModuleType:
    found = kinds().get(name)
    if found is None:
        raise ExperimentError(f"{where}: unknown kind {name!r} (known: {', '.join(sorted(kinds()))})")
    return found
