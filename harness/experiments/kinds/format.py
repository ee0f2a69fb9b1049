"""Format experiments: arms are format specs, each encoding the same seeded N(0,1) rows; blocks are
groups of rows, the per-row squared error and energy their samples (normalized MSE as `formats`)."""
from __future__ import annotations

import numpy as np
import torch

from quantbench.kernels import formats

from ..errors import ExperimentError
from ..measurement import ArmData, Measurement
from ..settings import checked

MAIN = "format"
DEFAULTS = {"format": "q8_0", "rows": 4096, "dim": 128, "groups": 16}
METRICS = {"nmse": ("ratio", "lower"), "mse": ("value^2", "lower"), "bits_per_value": ("bits", "lower")}


def validate(experiment, where: str) -> None:
    run = checked(DEFAULTS, experiment.run, where)
    direction(experiment.metric, where)
    if run["groups"] < 2 or run["rows"] < run["groups"]:
        raise ExperimentError(f"{where}: need at least 2 row groups and a row per group")
    for arm in experiment.arms():
        if set(arm.settings) != {MAIN}:
            raise ExperimentError(f"{where}: arm {arm.label}: a format arm is a format spec, e.g. turbo3:group=64")


def facts(config: dict) -> dict:
    return {"device": "cpu"}


def measure(experiment, config: dict, progress: bool = True) -> Measurement:
    config = checked(DEFAULTS, config, f"experiment {experiment.id}")
    rows, dim = config["rows"], config["dim"]
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(config["seed"]), dtype=torch.float32)
    energy = (x.double() ** 2).sum(1).numpy()
    data, shown = {}, {}
    for arm in experiment.arms():
        fmt = formats.get(arm.settings[MAIN])
        y = fmt.decode(fmt.encode(x)).double()
        se = ((y - x.double()) ** 2).sum(1).numpy()
        blocks = [{"se": s, "energy": e, "dim": np.full(len(s), dim)}
                  for s, e in zip(np.array_split(se, config["groups"]), np.array_split(energy, config["groups"]))]
        bits = fmt.bits_per_value_for(dim)
        data[arm.label] = ArmData(blocks, {"bits_per_value": bits})
        shown[arm.label] = {"nmse": float(se.sum() / energy.sum()), "bits_per_value": bits}
    unit, direction_ = direction(experiment.metric)
    return Measurement("format", experiment.metric, direction_, unit, "row group",
                       f"gaussian,rows={rows},dim={dim},seed={config['seed']}", "cpu", data, shown)


def statistic(metric: str, a: dict[str, np.ndarray]) -> float:
    if metric == "nmse":
        return float(a["se"].sum() / a["energy"].sum())
    return float((a["se"] / a["dim"]).mean())


def direction(metric: str, where: str = "experiment") -> tuple[str, str]:
    if metric not in METRICS:
        raise ExperimentError(f"{where}: metric {metric!r}: format experiments compare {', '.join(METRICS)}")
    return METRICS[metric]
