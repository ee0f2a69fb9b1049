"""Weight-quantization experiments: arms are weight specs with a method (rtn, gptq and its options),
measured by quality_table against the model's own weights on the same chunks; blocks are chunks.
GPTQ's Hessians are collected once per calibration set and shared by every arm that uses it."""
from __future__ import annotations

from quantbench.harness.quality.run import as_policy, quality_table
from quantbench.harness.weights import GPTQOptions, calibration_tokens, quantize_weights

from ..errors import ExperimentError
from ..measurement import ArmData, Measurement
from ..settings import checked
from ..token_metrics import QUALITY_DEFAULTS, arm_data, check_metric, model_facts, quality_call, resolve, shown
from ..token_metrics import direction as _direction
from ..token_metrics import statistic as _statistic

MAIN = "weights"
DEFAULTS = {**QUALITY_DEFAULTS, "weights": "default=q8_0", "kv": "f16", "method": "rtn", "gptq_sequences": 16,
            "gptq_length": 256, "gptq_damp": 0.01, "gptq_act_order": False, "gptq_alpha": 0.0}
ARM_SETTINGS = ("weights", "method", "gptq_sequences", "gptq_length", "gptq_damp", "gptq_act_order", "gptq_alpha")
FIXED = ("weights_bpw", "bits_per_value")


def validate(experiment, where: str) -> None:
    checked(DEFAULTS, experiment.run, where)
    check_metric(experiment.metric, FIXED, where)
    for arm in experiment.arms():
        extra = sorted(set(arm.settings) - set(ARM_SETTINGS))
        if extra:
            raise ExperimentError(f"{where}: arm {arm.label}: a weights arm sets only {', '.join(ARM_SETTINGS)}, "
                                  f"not {', '.join(extra)}")
        method = arm.config(experiment.run).get("method", "rtn")
        if method not in ("rtn", "gptq"):
            raise ExperimentError(f"{where}: arm {arm.label}: method {method!r} (choose rtn or gptq)")


def facts(config: dict) -> dict:
    return model_facts(checked(DEFAULTS, config, "run"))


def measure(experiment, config: dict, progress: bool = True) -> Measurement:
    config = checked(DEFAULTS, config, f"experiment {experiment.id}")
    model, corpus, device = resolve(config)
    reserved = (config["seed"] + 1) * config["chunks"] * config["ctx"]
    calibrations, hessians = {}, {}
    built = []
    for arm in experiment.arms():
        c = arm.config(config)
        options = GPTQOptions(damp=c["gptq_damp"], act_order=c["gptq_act_order"], alpha=c["gptq_alpha"])
        calibration = None
        if c["method"] == "gptq":
            key = (c["gptq_sequences"], c["gptq_length"])
            if key not in calibrations:
                calibrations[key] = calibration_tokens(model, corpus, *key, reserved_tokens=reserved)
                hessians[key] = {}
            calibration = calibrations[key]
        weights = quantize_weights(model, c["weights"], c["method"], gptq=options, calibration=calibration,
                                   hessians=hessians.get((c["gptq_sequences"], c["gptq_length"])), progress=progress)
        built.append((arm, weights))
    labels = [f"{w.label}:{w.variant}" for _, w in built]
    if len(set(labels)) != len(labels):
        raise ExperimentError(f"experiment {experiment.id}: two arms quantize the same way ({', '.join(labels)})")
    policy = as_policy(model, config["kv"])
    rows = quality_table(model, [policy], weights=[w for _, w in built], **quality_call(model, corpus, config,
                                                                                       progress))
    data: dict[str, ArmData] = {}
    key_metrics = {}
    for (arm, _), row in zip(built, rows):
        data[arm.label], key_metrics[arm.label] = arm_data(row, FIXED), shown(row, experiment.metric)
    unit, direction_ = _direction(experiment.metric)
    return Measurement("weights", experiment.metric, direction_, unit, "chunk", rows[0]["case"], device, data,
                       key_metrics)


statistic = _statistic


def direction(metric: str) -> tuple[str, str]:
    return _direction(metric)
