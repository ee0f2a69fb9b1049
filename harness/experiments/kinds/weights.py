"""Weight and activation quantization experiments: arms are weight specs with a method (rtn, gptq and
its options) and an optional activation spec (`act`: "int8,smooth=0.5", "int4,rotate=1"; weights
"none" for activations alone), measured by quality_table against the unquantized model on the same
chunks; blocks are chunks. GPTQ's Hessians are collected once per calibration set and shared by
every arm that uses it, SmoothQuant's activation maxima likewise."""
from __future__ import annotations

from quantbench.harness.activations import prepare_activations
from quantbench.harness.quality.run import as_policy, quality_table
from quantbench.harness.weights import GPTQOptions, calibration_tokens, quantize_weights

from ..errors import ExperimentError
from ..measurement import ArmData, Measurement
from ..settings import check_arm_settings, checked
from ..token_metrics import QUALITY_DEFAULTS, arm_data, check_metric, model_facts, quality_call, resolve, shown
from ..token_metrics import direction as _direction
from ..token_metrics import statistic as _statistic

MAIN = "weights"
DEFAULTS = {**QUALITY_DEFAULTS, "weights": "default=q8_0", "kv": "f16", "method": "rtn", "gptq_sequences": 16,
            "gptq_length": 256, "gptq_damp": 0.01, "gptq_act_order": False, "gptq_alpha": 0.0, "act": "",
            "smooth_sequences": 16, "smooth_length": 256}
ARM_SETTINGS = ("weights", "method", "gptq_sequences", "gptq_length", "gptq_damp", "gptq_act_order", "gptq_alpha",
                "act")
FIXED = ("weights_bpw", "bits_per_value", "act_bits")
NONE = "none"  # weights = "none": the model's own weights (an activations-only arm)


def validate(experiment, where: str) -> None:
    checked(DEFAULTS, experiment.run, where)
    check_metric(experiment.metric, FIXED, where)
    check_arm_settings(experiment, ARM_SETTINGS, where)
    for arm in experiment.arms():
        method = arm.config(experiment.run).get("method", "rtn")
        if method not in ("rtn", "gptq"):
            raise ExperimentError(f"{where}: arm {arm.label}: method {method!r} (choose rtn or gptq)")


def facts(config: dict) -> dict:
    return model_facts(checked(DEFAULTS, config, "run"))


def measure(experiment, config: dict, progress: bool = True) -> Measurement:
    config = checked(DEFAULTS, config, f"experiment {experiment.id}")
    model, corpus, device = resolve(config)
    reserved = (config["seed"] + 1) * config["chunks"] * config["ctx"]
    calibrations: dict[tuple, object] = {}

    def calibration(n_seq: int, length: int):
        if (n_seq, length) not in calibrations:
            calibrations[(n_seq, length)] = calibration_tokens(model, corpus, n_seq, length, reserved_tokens=reserved)
        return calibrations[(n_seq, length)]

    hessians: dict[tuple, dict] = {}
    maxima: dict = {}
    weights, activations = [], []  # (arm, quantization); quality_table gives the weights' rows first
    for arm in experiment.arms():
        c = arm.config(config)
        act = None
        if c["act"]:
            act = prepare_activations(model, c["act"], calibration=calibration(c["smooth_sequences"],
                                                                                c["smooth_length"]),
                                      maxima=maxima, progress=progress)
        quantized = None
        if c["weights"] != NONE:
            key = (c["gptq_sequences"], c["gptq_length"])
            options = GPTQOptions(damp=c["gptq_damp"], act_order=c["gptq_act_order"], alpha=c["gptq_alpha"])
            quantized = quantize_weights(
                model, c["weights"], c["method"], gptq=options,
                calibration=calibration(*key) if c["method"] == "gptq" else None,
                hessians=hessians.setdefault(key, {}), progress=progress, folded=act.folded if act else None)
        if act is None and quantized is None:
            raise ExperimentError(f"experiment {experiment.id}: arm {arm.label} quantizes nothing "
                                  "(weights = \"none\" and no act)")
        if act is None:
            weights.append((arm, quantized))
        else:
            activations.append((arm, act if quantized is None else act.with_weights(quantized)))
    built = weights + activations
    labels = [f"{q.label}:{q.variant}" for _, q in built]
    if len(set(labels)) != len(labels):
        raise ExperimentError(f"experiment {experiment.id}: two arms quantize the same way ({', '.join(labels)})")
    policy = as_policy(model, config["kv"])
    rows = quality_table(model, [policy], weights=[q for _, q in weights], activations=[q for _, q in activations],
                         **quality_call(model, corpus, config, progress))
    data: dict[str, ArmData] = {}
    key_metrics = {}
    for (arm, _), row in zip(built, rows):
        data[arm.label], key_metrics[arm.label] = arm_data(row, FIXED), shown(row, experiment.metric)
    unit, direction_ = _direction(experiment.metric)
    ordered = {arm.label: data[arm.label] for arm in experiment.arms()}
    return Measurement("weights", experiment.metric, direction_, unit, "chunk", rows[0]["case"], device, ordered,
                       {label: key_metrics[label] for label in ordered})


statistic = _statistic


def direction(metric: str) -> tuple[str, str]:
    return _direction(metric)
