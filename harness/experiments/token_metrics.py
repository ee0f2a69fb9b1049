"""Model-quality experiments (kinds kv and weights): quality_table rows to paired per-chunk blocks,
and the llama-perplexity statistics recomputed on merged blocks (the same definitions as
harness/quality/kld_stats.py, in numpy for the bootstrap's thousands of replicates)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from quantbench.harness.quality.kld_stats import PERCENTILES
from quantbench.harness.quality.run import METRICS

from .errors import ExperimentError
from .measurement import ArmData

TOKEN_FIELDS = ("kld", "same_top", "nll", "nll_ref", "dp")
QUANTILES = {"kld_median": 0.5, "kld_max": 1.0, **dict(PERCENTILES)}
QUALITY_DEFAULTS = {"model": "", "corpus": "", "ctx": 512, "chunks": 8, "attn": "dequant_sdpa", "device": ""}


def statistic(metric: str, a: dict[str, np.ndarray]) -> float:
    if metric == "kld_mean":
        return float(a["kld"].mean())
    if metric in QUANTILES:
        return float(np.quantile(a["kld"], QUANTILES[metric]))
    if metric == "same_top_pct":
        return 100.0 * float(a["same_top"].mean())
    if metric == "rms_dp":
        return float(np.sqrt((a["dp"] ** 2).mean()))
    if metric == "ppl":
        return float(np.exp(a["nll"].mean()))
    if metric == "ln_ppl_ratio":
        return float((a["nll"] - a["nll_ref"]).mean())
    raise ExperimentError(f"metric {metric!r} is not one the quality runs sample per token "
                          f"(choose from {', '.join(sampled_metrics())}, or a fixed one: bits_per_value, ...)")


def sampled_metrics() -> list[str]:
    return ["kld_mean", *QUANTILES, "same_top_pct", "rms_dp", "ppl", "ln_ppl_ratio"]


def direction(metric: str) -> tuple[str, str]:
    known = {**METRICS, "weights_bpw": ("bits", "lower"), "act_bits": ("bits", "lower")}
    if metric not in known:
        raise ExperimentError(f"metric {metric!r}: the quality runs record {', '.join(sorted(known))}")
    return known[metric]


def check_metric(metric: str, fixed: tuple[str, ...], where: str) -> None:
    direction(metric)
    if metric not in fixed and metric not in sampled_metrics():
        raise ExperimentError(f"{where}: metric {metric} has no per-token samples to compare with")


def arm_data(row: dict, fixed: tuple[str, ...]) -> ArmData:
    blocks = [{name: getattr(stats, name).double().numpy() for name in TOKEN_FIELDS} for stats in row["token_blocks"]]
    return ArmData(blocks, {name: float(row[name]) for name in fixed if name in row})


def shown(row: dict, metric: str) -> dict[str, float]:
    keys = dict.fromkeys([metric, "kld_mean", "same_top_pct", "bits_per_value", "weights_bpw", "act_bits"])
    return {k: float(row[k]) for k in keys if k in row}


@functools.lru_cache(maxsize=2)
def loaded_model(path: str, device: str):
    from quantbench.harness.model import load_model

    return load_model(path or None, device=device)


def resolve(config: dict):
    """(model, corpus, device) of a quality configuration."""
    from quantbench.harness.commands.common import resolve_device
    from quantbench.harness.quality.corpus import load_corpus

    device = resolve_device(config["device"] or None)
    return loaded_model(config["model"], device), load_corpus(config["corpus"] or None), device


def model_facts(config: dict) -> dict:
    model, _, device = resolve(config)
    c = model.config
    return {"device": device.split(":")[0], "head_dim": c.head_dim, "arch": c.arch, "n_layers": c.n_layers,
            "n_kv_heads": c.n_kv_heads, "model": Path(config["model"]).name if config["model"] else "embedded"}


def quality_call(model, corpus, config: dict, progress: bool) -> dict:
    """The keyword arguments of quality_table for one configuration (seed s scores chunks s*chunks on)."""
    return dict(corpus=corpus, ctx=config["ctx"], chunks=config["chunks"], attn=config["attn"],
                model_name=Path(config["model"]).name if config["model"] else None, progress=progress,
                start=config["seed"] * config["chunks"], keep_tokens=True)
