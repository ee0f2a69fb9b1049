"""Verdict records. Per run of an experiment: one record per variant (metric: the experiment's
metric, value: its relative difference against the baseline) and one verdict record (variant
"verdict", metric "confidence", value: the run's confidence 1..3). Each carries an `experiment`
field with what it was decided from: the arms' values and intervals, each arm's metric per block
(chunk, round, row group), the configuration, the independence key that tells reproductions
apart, and the experiment's text."""
from __future__ import annotations

from dataclasses import asdict

from quantbench.harness import results as results_store

OP = "experiment"
VERDICT = "verdict"


def verdict_records(task, result, decision, independence: str) -> list[dict]:
    experiment, m = task.experiment, result.measurement
    config = {**task.config}
    common = dict(op=OP, format=experiment.id, backend=experiment.kind, case=m.case, env=result.env,
                  command=task.command, device=m.device)
    about = {"id": experiment.id, "independence": independence, "baseline": decision.baseline.label,
             "margin": experiment.margin}
    records = []
    for arm in decision.variants:
        records.append({**results_store.make_record(
            variant=arm.label, metric=experiment.metric, value=arm.rel_diff, unit="relative",
            direction=m.direction, **common), "experiment": {**about, **asdict(arm)}})
    summary = {
        **about, "title": experiment.title, "hypothesis": experiment.hypothesis, "source": experiment.source,
        "kind": experiment.kind, "metric": experiment.metric, "direction": m.direction, "unit": m.unit,
        "verdict": decision.verdict, "precision": decision.precision,
        "baseline_value": decision.baseline.value, "baseline_ci": list(decision.baseline_ci),
        "variants": [asdict(v) for v in decision.variants], "shown": m.shown, "config": config,
        "block": m.block, "n_blocks": m.n_blocks, "per_block": decision.per_block,
        "file": str(experiment.path or ""), "machine": result.machine,
    }
    records.append({**results_store.make_record(
        variant=VERDICT, metric="confidence", value=decision.precision, unit="1-5", direction="higher", **common),
        "experiment": summary})
    return records


def stored_verdicts(records: list[dict]) -> list[dict]:
    """The `experiment` summaries of the verdict records, each with its record's env and command, oldest first."""
    out = [{**r["experiment"], "env": r["env"], "command": r["command"], "case": r["case"]} for r in records
           if r.get("op") == OP and r.get("variant") == VERDICT and isinstance(r.get("experiment"), dict)]
    return sorted(out, key=lambda v: v["env"].get("time") or "")
