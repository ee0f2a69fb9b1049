"""The landscape: one row per experiment, built from the stored verdict records.

Runs of one experiment are grouped by their independence key (every setting but the precision
ones, and the machine): a key's latest run stands for it, so an identical re-run does not count
twice. The latest run overall gives the result; `reproductions` says how many of the independent
runs reached the same verdict ("3/3 agree"). Confidence: the latest run's precision (1..3, see
stats.py), plus one for each agreeing reproduction beyond the first (at most two) when all agree;
minus one (at least 1) when any disagrees.
"""
from __future__ import annotations

from .records import stored_verdicts

COLUMNS = ["id", "title / hypothesis", "result", "confidence", "reproductions", "metrics"]


def landscape_rows(records: list[dict], experiments=()) -> list[dict]:
    """Rows for stored verdicts, plus "not run" (or "not runnable here: ...") rows for the known
    experiments without one."""
    runs: dict[str, dict[str, dict]] = {}
    for verdict in stored_verdicts(records):
        runs.setdefault(verdict["id"], {})[verdict["independence"]] = verdict  # the latest per key wins
    rows = [_row(list(by_key.values())) for by_key in runs.values()]
    for e in experiments:
        if e.id not in runs:
            rows.append({"id": e.id, "title": e.title, "hypothesis": e.hypothesis, "kind": e.kind,
                         "source": e.source, "result": _not_run(e), "confidence": None, "reproductions": "0/0",
                         "metrics": "", "command": f"quantbench experiment run {e.id}"})
    for row in rows:
        row["title / hypothesis"] = f"{row['title']}: {row['hypothesis']}"
    return sorted(rows, key=lambda r: r["id"])


def _not_run(experiment) -> str:
    """"not run", or why it cannot run here when it needs a CUDA device this machine lacks."""
    if experiment.requires.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "not runnable here: needs device = cuda; this machine has no CUDA device"
    return "not run"


def confidence(precision: int, agreeing: int, runs: int) -> int:
    if agreeing == runs:
        return min(5, precision + min(2, runs - 1))
    return max(1, precision - 1)


def _row(runs: list[dict]) -> dict:
    latest = max(runs, key=lambda v: v["env"].get("time") or "")
    agreeing = sum(v["verdict"] == latest["verdict"] for v in runs)
    return {"id": latest["id"], "title": latest["title"], "hypothesis": latest["hypothesis"], "kind": latest["kind"],
            "source": latest["source"], "result": latest["verdict"],
            "confidence": confidence(latest["precision"], agreeing, len(runs)),
            "reproductions": f"{agreeing}/{len(runs)} agree", "metrics": key_metrics(latest),
            "case": latest["case"], "command": latest["command"], "runs": runs}


def key_metrics(verdict: dict) -> str:
    metric = verdict["metric"]
    base = f"{verdict['baseline']}: {metric} {verdict['baseline_value']:.4g}"
    shown = verdict["shown"].get(verdict["baseline"], {})
    bits = "weights_bpw" if "weights_bpw" in shown else "bits_per_value"  # a weights run's KV bits say nothing
    if bits in shown and metric != bits:
        base += f" @ {shown[bits]:.3g} {'bpw' if bits == 'weights_bpw' else 'b'}"
    parts = [f"{v['label']} {v['rel_diff']:+.1%} [{v['ci_low']:+.1%}, {v['ci_high']:+.1%}]"
             for v in verdict["variants"]]
    return "; ".join([base, *parts])


def arm_points(rows: list[dict]) -> list[dict]:
    """Each variant of each experiment's latest run against its baseline, for the forest plots."""
    points = []
    for row in rows:
        latest = max(row.get("runs", []), key=lambda v: v["env"].get("time") or "", default=None)
        if latest is None:
            continue
        for v in latest["variants"]:
            points.append({"experiment": row["id"], "variant": v["label"], "metric": latest["metric"],
                           "rel_diff": v["rel_diff"], "ci_low": v["ci_low"], "ci_high": v["ci_high"],
                           "expect": v["expect"], "margin": latest["margin"], "outcome": v["outcome"],
                           "direction": latest["direction"]})
    return points


def pareto_points(records: list[dict]) -> list[dict]:
    """KLD against bits per value of every KV policy in the quality records (the latest per policy and case)."""
    latest: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: r["env"].get("time") or ""):
        if r.get("op") != "quality" or r["format"].startswith("w:") or "|" in r["format"]:
            continue
        point = latest.setdefault((r["format"], r["case"], r["variant"]), {"kv": r["format"], "case": r["case"]})
        if r["metric"] in ("kld_mean", "kld_mean_err", "bits_per_value"):
            point[r["metric"]] = r["value"]
    return [p for p in latest.values() if {"kld_mean", "bits_per_value"} <= set(p)]
