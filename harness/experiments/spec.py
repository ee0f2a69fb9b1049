"""An experiment file: one TOML file, one hypothesis, a baseline and the variants that test it.

    id = "EXP-0005"
    title = "FWHT rotation ablation"
    hypothesis = "Without the rotation turbo3's KLD rises sharply"
    source = "seed 001 EXP-0005"
    kind = "kv"                      # a module of harness/experiments/kinds
    metric = "kld_mean"
    baseline = "turbo3"
    variants = ["turbo3:rotate=0", {label = "sparse", kv = "turbo3", attn = "sparse_v"}]
    expect = "worse"                 # or a table {variant label = better|worse|same}
    margin = 0.05
    [requires]                       # head_dim = 128, arch = "qwen3", device = "cuda"
    [run]                            # handed to the kind's runner: ctx, chunks, model, corpus, seed, ...

An arm (the baseline or a variant) is a string, the kind's main value (a KV policy, a weight spec,
a kernel backend/variant, a format), or a table of run settings for that arm with an optional
`label`. `expect = "baseline"` (or no variants) makes an experiment that only establishes a reference.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExperimentError
from .kinds import get_kind

EXPECTATIONS = ("better", "worse", "same")
MAX_LINES = 30
KEYS = {"id", "title", "hypothesis", "source", "kind", "metric", "baseline", "variants", "expect", "margin",
        "requires", "run", "notes"}
REQUIRED = ("id", "title", "hypothesis", "kind", "metric", "baseline")


@dataclass(frozen=True)
class Arm:
    label: str
    settings: dict  # run settings for this arm; the kind's main key holds its main value

    def config(self, run: dict) -> dict:
        return {**run, **self.settings}


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    hypothesis: str
    kind: str
    metric: str
    baseline: Arm
    variants: tuple[Arm, ...]
    expect: dict[str, str]  # variant label -> better | worse | same
    margin: float
    path: Path | None = None
    source: str = ""
    requires: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    notes: str = ""

    @property
    def is_baseline(self) -> bool:
        return not self.variants

    def arms(self) -> tuple[Arm, ...]:
        return (self.baseline, *self.variants)


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentError(f"experiment file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"experiment {path}: not a UTF-8 text file ({exc})") from None
    lines = len(text.strip().splitlines())
    if lines > MAX_LINES:
        raise ExperimentError(f"experiment {path}: {lines} lines; an experiment file holds at most {MAX_LINES}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"experiment {path}: not valid TOML ({exc})") from None
    return parse_experiment(data, path)


def parse_experiment(data: dict, path: Path | None = None) -> Experiment:
    where = f"experiment {path}" if path else "experiment"
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ExperimentError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("id", "title", "hypothesis", "kind", "metric", "source", "notes"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise ExperimentError(f"{where}: {key} must be a non-empty string")
    where = f"experiment {data['id']}" + (f" ({path})" if path else "")
    kind = get_kind(data["kind"], where)
    for key in ("requires", "run"):
        if not isinstance(data.get(key, {}), dict):
            raise ExperimentError(f"{where}: [{key}] must be a table")
    baseline = _arm(data["baseline"], kind.MAIN, where, "baseline")
    variants = tuple(_arm(v, kind.MAIN, where, f"variants[{i}]") for i, v in enumerate(_list(data, where)))
    labels = [baseline.label, *(v.label for v in variants)]
    if len(set(labels)) != len(labels):
        raise ExperimentError(f"{where}: arm labels repeat ({', '.join(labels)}); give each a distinct label")
    margin = data.get("margin", 0.05)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 10:
        raise ExperimentError(f"{where}: margin must be a number above 0 (a relative difference), got {margin!r}")
    experiment = Experiment(
        id=data["id"], title=data["title"], hypothesis=data["hypothesis"], kind=data["kind"],
        metric=data["metric"], baseline=baseline, variants=variants,
        expect=_expectations(data.get("expect"), variants, where), margin=float(margin), path=path,
        source=data.get("source", ""), requires=dict(data.get("requires", {})), run=dict(data.get("run", {})),
        notes=data.get("notes", ""))
    kind.validate(experiment, where)
    return experiment


def _list(data: dict, where: str) -> list:
    variants = data.get("variants", [])
    if not isinstance(variants, list):
        raise ExperimentError(f"{where}: variants must be a list")
    return variants


def _arm(value, main: str, where: str, name: str) -> Arm:
    if isinstance(value, str) and value.strip():
        return Arm(value.strip(), {main: value.strip()})
    if isinstance(value, dict):
        settings = {k: v for k, v in value.items() if k != "label"}
        if not settings:
            raise ExperimentError(f"{where}: {name} has no settings")
        label = value.get("label") or ",".join(f"{k}={v}" for k, v in settings.items())
        if not isinstance(label, str):
            raise ExperimentError(f"{where}: {name}.label must be a string")
        return Arm(label, settings)
    raise ExperimentError(f"{where}: {name} must be a non-empty string or a table of run settings, got {value!r}")


def _expectations(expect, variants: tuple[Arm, ...], where: str) -> dict[str, str]:
    if expect in (None, "baseline"):
        if variants:
            raise ExperimentError(f"{where}: expect is missing; say better, worse or same for the variants")
        return {}
    if not variants:
        raise ExperimentError(f"{where}: expect {expect!r} given but there are no variants to compare")
    if isinstance(expect, str):
        expect = {v.label: expect for v in variants}
    if not isinstance(expect, dict):
        raise ExperimentError(f"{where}: expect must be better, worse, same or a table per variant")
    labels = {v.label for v in variants}
    extra, absent = sorted(set(expect) - labels), sorted(labels - set(expect))
    if extra or absent:
        raise ExperimentError(f"{where}: expect names {', '.join(extra) or 'no unknown variant'}; "
                              f"missing {', '.join(absent) or 'none'} (variants: {', '.join(sorted(labels))})")
    bad = {k: v for k, v in expect.items() if v not in EXPECTATIONS}
    if bad:
        raise ExperimentError(f"{where}: expect {bad}: each must be one of {', '.join(EXPECTATIONS)}")
    return dict(expect)
