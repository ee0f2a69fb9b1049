"""KV-cache experiments: arms are KV policies (and attention backends), measured by quality_table
on the same chunks against the same cached reference; blocks are chunks of per-token statistics."""
from __future__ import annotations

from quantbench.harness.quality.run import as_policy, quality_table

from ..errors import ExperimentError
from ..measurement import ArmData, Measurement
from ..settings import check_arm_settings, checked, groups
from ..token_metrics import QUALITY_DEFAULTS, arm_data, check_metric, model_facts, quality_call, resolve, shown
from ..token_metrics import direction as _direction
from ..token_metrics import statistic as _statistic

MAIN = "kv"
DEFAULTS = {**QUALITY_DEFAULTS, "kv": "f16"}
ARM_SETTINGS = ("kv", "attn")
FIXED = ("bits_per_value", "kv_bytes_per_token")


def validate(experiment, where: str) -> None:
    checked(DEFAULTS, experiment.run, where)
    check_metric(experiment.metric, FIXED, where)
    check_arm_settings(experiment, ARM_SETTINGS, where)


def facts(config: dict) -> dict:
    return model_facts(checked(DEFAULTS, config, "run"))


def measure(experiment, config: dict, progress: bool = True) -> Measurement:
    config = checked(DEFAULTS, config, f"experiment {experiment.id}")
    model, corpus, device = resolve(config)
    data: dict[str, ArmData] = {}
    key_metrics: dict[str, dict] = {}
    case = ""
    for shared, arms in groups(experiment.arms(), config, MAIN):
        policies = [as_policy(model, arm.settings.get("kv", shared.get("kv"))) for arm in arms]
        specs = [p.spec for p in policies]
        if len(set(specs)) != len(specs):
            raise ExperimentError(f"experiment {experiment.id}: two arms measure the same policy ({', '.join(specs)})")
        rows = quality_table(model, policies, **quality_call(model, corpus, shared, progress))
        by_spec = {row["kv"]: row for row in rows}
        for arm, policy in zip(arms, policies):
            row = by_spec[policy.spec]
            data[arm.label], key_metrics[arm.label] = arm_data(row, FIXED), shown(row, experiment.metric)
            case = row["case"]
    unit, direction_ = _direction(experiment.metric)
    ordered = {arm.label: data[arm.label] for arm in experiment.arms()}
    return Measurement("kv", experiment.metric, direction_, unit, "chunk", case, device, ordered,
                       {label: key_metrics[label] for label in ordered})


statistic = _statistic


def direction(metric: str) -> tuple[str, str]:
    return _direction(metric)
