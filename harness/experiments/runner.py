"""Running experiments: a Task is one experiment at one configuration (its [run] settings with the
command line's overrides). `measure_task` runs where the work is done (this process or a Ray worker)
and returns plain data; `conclude` runs in the driver: statistics, verdict and records.

    tasks = [Task.make(load_experiment(path), {"ctx": 1024})]
    for result in map(measure_task, tasks):
        row, records = conclude(result)
"""
from __future__ import annotations

import shlex
import traceback
from dataclasses import dataclass, field

from quantbench.harness import env as envmod
from quantbench.harness.errors import UserError
from quantbench.kernels.errors import FormatError

from .errors import ExperimentError
from .kinds import get_kind
from .measurement import Measurement
from .records import verdict_records
from .settings import COMMON, independence_key
from .spec import Experiment
from .stats import decide


@dataclass(frozen=True)
class Task:
    experiment: Experiment
    overrides: dict = field(default_factory=dict)
    reference: tuple[str, ...] = ()  # how the command line names the experiment: its file, or its ID [--dir DIR]

    @classmethod
    def make(cls, experiment: Experiment, overrides: dict | None = None,
             reference: tuple[str, ...] = ()) -> "Task":
        return cls(experiment, dict(overrides or {}), tuple(reference) or (experiment.id,))

    @property
    def config(self) -> dict:
        return {**self.experiment.run, **self.overrides}

    @property
    def command(self) -> str:
        args = ["quantbench", "experiment", "run", *self.reference]
        for key, value in sorted(self.overrides.items()):
            flag = f"--{key}" if key in OVERRIDE_FLAGS else "--set"
            args += [flag, str(value)] if flag != "--set" else [flag, f"{key}={_toml_value(value)}"]
        return shlex.join(args)


OVERRIDE_FLAGS = ("ctx", "chunks", "seed", "model", "corpus", "device")


@dataclass
class TaskResult:
    task: Task
    measurement: Measurement | None = None
    not_runnable: str = ""
    error: str = ""
    env: dict = field(default_factory=dict)
    machine: str = ""


def unmet_requirement(experiment: Experiment, config: dict) -> str:
    """Why the experiment cannot run here with this configuration ("" when it can)."""
    if not experiment.requires:
        return ""
    kind = get_kind(experiment.kind)
    wanted = dict(experiment.requires)
    if wanted.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "needs device = cuda; this machine has no CUDA device"
    facts = kind.facts(config)
    unknown = sorted(set(wanted) - set(facts))
    if unknown:
        raise ExperimentError(f"experiment {experiment.id}: requires {', '.join(unknown)}: {experiment.kind} "
                              f"experiments can require {', '.join(sorted(facts))}")
    for key, value in wanted.items():
        if facts[key] != value:
            return f"needs {key} = {value!r}; this configuration has {facts[key]!r}"
    return ""


def measure_task(task: Task, progress: bool = True) -> TaskResult:
    """Measure one task; a problem in its settings or formats comes back as `error`, not raised."""
    experiment = task.experiment
    try:
        reason = unmet_requirement(experiment, task.config)
        if reason:
            return TaskResult(task, not_runnable=reason)
        measurement = get_kind(experiment.kind).measure(experiment, task.config, progress)
    except (UserError, FormatError, ValueError) as exc:
        return TaskResult(task, error=str(exc))
    except Exception:  # noqa: BLE001 - one broken experiment must not lose the others' results
        return TaskResult(task, error=traceback.format_exc(limit=3).strip().splitlines()[-1])
    return TaskResult(task, measurement, env=envmod.environment(measurement.device),
                      machine=envmod.device_name(measurement.device))


def conclude(result: TaskResult) -> tuple[dict, list[dict]]:
    """(the verdict row to print, the records to store) of a measured task."""
    task, experiment = result.task, result.task.experiment
    row = {"id": experiment.id, "title": experiment.title, "kind": experiment.kind, "metric": experiment.metric}
    if result.not_runnable or result.error:
        status = f"not runnable here: {result.not_runnable}" if result.not_runnable else f"error: {result.error}"
        return {**row, "verdict": status, "confidence": None, "detail": "", "case": ""}, []
    config = {**COMMON, **task.config}
    decision = decide(result.measurement, experiment.expect, experiment.margin, seed=config["seed"],
                      bootstrap=config["bootstrap"], level=config["level"])
    key = independence_key(config, result.machine)
    records = verdict_records(task, result, decision, key)
    return {**row, "verdict": decision.verdict, "confidence": decision.precision, "detail": describe(decision),
            "case": result.measurement.case}, records


def describe(decision) -> str:
    base = f"{decision.baseline.label} {decision.baseline.value:.4g}"
    parts = [f"{v.label} {v.rel_diff:+.1%} [{v.ci_low:+.1%}, {v.ci_high:+.1%}] {v.outcome}" for v in decision.variants]
    return "; ".join([base, *parts])


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
