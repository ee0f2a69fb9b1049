"""Kernel experiments: arms are variants ("backend/name") of one op on one format and shape, timed
together by bench.run_bench, round-robin in the same rounds; blocks are rounds of timing samples."""
from __future__ import annotations

import numpy as np

from quantbench.harness.bench import run_bench, select
from quantbench.harness.timing import TimingConfig
from quantbench.kernels.registry import Case, get_op

from ..errors import ExperimentError
from ..measurement import ArmData, Measurement
from ..settings import checked

MAIN = "variant"
DEFAULTS = {"variant": "torch/reference", "op": "dequantize", "format": "q4_0", "shape": "", "budget": 2.0,
            "rounds": 10, "device": ""}
METRICS = {"time": ("s", "lower"), "gbps": ("GB/s", "higher")}


def validate(experiment, where: str) -> None:
    run = checked(DEFAULTS, experiment.run, where)
    direction(experiment.metric, where)
    try:
        get_op(run["op"])
    except KeyError as exc:
        raise ExperimentError(f"{where}: {exc.args[0]}") from None
    for arm in experiment.arms():
        if set(arm.settings) != {MAIN} or "/" not in arm.settings[MAIN]:
            raise ExperimentError(f"{where}: arm {arm.label}: a kernel arm is 'backend/variant', e.g. numba/parallel")


def facts(config: dict) -> dict:
    import torch

    return {"device": "cuda" if torch.cuda.is_available() else "cpu"}


def measure(experiment, config: dict, progress: bool = True) -> Measurement:
    from quantbench.harness.commands.bench import parse_shape

    config = checked(DEFAULTS, config, f"experiment {experiment.id}")
    op = get_op(config["op"])
    wanted = {arm.settings[MAIN]: arm.label for arm in experiment.arms()}
    pairs = [(v, spec) for v, spec in select(op.name, [config["format"]], None)
             if f"{v.backend}/{v.name}" in wanted]
    found = {f"{v.backend}/{v.name}" for v, _ in pairs}
    if found != set(wanted):
        missing = ", ".join(sorted(set(wanted) - found))
        raise ExperimentError(f"experiment {experiment.id}: no {op.name} variant {missing} for format "
                              f"{config['format']} (see quantbench list)")
    cases_for = None
    if config["shape"]:
        dims = parse_shape(config["shape"])
        op.check_dims(dims, "float32")
        cases_for = lambda spec: [Case.make(op.name, spec, **dims)]
    timing = TimingConfig(budget_s=config["budget"], rounds=config["rounds"])
    results = run_bench(op.name, pairs, cases_for, timing, progress=progress)
    data, shown = {}, {}
    for r in results:
        label = wanted[f"{r.variant.backend}/{r.variant.name}"]
        if r.timing is None:
            raise ExperimentError(f"experiment {experiment.id}: {label} did not run ({r.status})")
        blocks = [{"time": np.array(s), "gbps": r.bytes / np.array(s) / 1e9} for s in r.timing.samples_by_round()]
        data[label] = ArmData(blocks)
        shown[label] = {"time_us": r.timing.median * 1e6, "gbps": r.gbps}
    unit, direction_ = direction(experiment.metric)
    ordered = {arm.label: data[arm.label] for arm in experiment.arms()}
    case = f"op={op.name},format={config['format']},{results[0].case.shape_id}"
    return Measurement("kernel", experiment.metric, direction_, unit, "round", case, results[0].device, ordered,
                       {label: shown[label] for label in ordered})


def statistic(metric: str, arrays: dict[str, np.ndarray]) -> float:
    return float(np.median(arrays[metric]))


def direction(metric: str, where: str = "experiment") -> tuple[str, str]:
    if metric not in METRICS:
        raise ExperimentError(f"{where}: metric {metric!r}: kernel experiments compare {', '.join(METRICS)}")
    return METRICS[metric]
