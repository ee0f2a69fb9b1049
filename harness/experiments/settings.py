"""Run settings shared by the kinds: checking them against a kind's known settings and types, and
the arms grouped by the settings other than their main value (one runner call per group)."""
from __future__ import annotations

from .errors import ExperimentError

# settings that only sharpen one measurement: changing them is not an independent reproduction
PRECISION_SETTINGS = ("chunks", "bootstrap", "level", "budget", "rounds")
COMMON = {"seed": 0, "bootstrap": 2000, "level": 0.95}


def checked(defaults: dict, config: dict, where: str) -> dict:
    """config over the defaults; an unknown setting or one of the wrong type is an ExperimentError."""
    known = {**COMMON, **defaults}
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ExperimentError(f"{where}: unknown run setting(s) {', '.join(unknown)} "
                              f"(this kind takes {', '.join(sorted(known))})")
    out = dict(known)
    for key, value in config.items():
        default = known[key]
        if default is not None and not _same_type(default, value):
            raise ExperimentError(f"{where}: run setting {key} = {value!r}: expected a {type(default).__name__}")
        out[key] = value
    return out


def _same_type(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def groups(arms: tuple, run: dict, main: str) -> list[tuple[dict, list]]:
    """Arms that share every setting but `main`, with those shared settings, in first-seen order."""
    out: dict[tuple, tuple[dict, list]] = {}
    for arm in arms:
        config = arm.config(run)
        shared = {k: v for k, v in config.items() if k != main}
        key = tuple(sorted((k, repr(v)) for k, v in shared.items()))
        out.setdefault(key, (shared, []))[1].append(arm)
    return list(out.values())


def independence_key(config: dict, machine: str) -> str:
    """What makes a run an independent reproduction: every setting but the precision ones, and the machine."""
    items = sorted((k, v) for k, v in config.items() if k not in PRECISION_SETTINGS)
    return ";".join(f"{k}={v}" for k, v in items) + f";machine={machine}"


def check_arm_settings(experiment, allowed: tuple[str, ...], where: str) -> None:
    """Each arm sets only the settings its kind lets an arm vary."""
    for arm in experiment.arms():
        extra = sorted(set(arm.settings) - set(allowed))
        if extra:
            raise ExperimentError(f"{where}: arm {arm.label}: a {experiment.kind} arm sets only "
                                  f"{', '.join(allowed)}, not {', '.join(extra)}")
