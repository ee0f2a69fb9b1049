"""One metric over commits: a series per (op, format, backend, variant, case), a point per commit
(the commit's newest record of that row), commits ordered by record time."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

from .errors import UserError

SERIES_FIELDS = ("op", "format", "backend", "variant", "case")


@dataclass
class Point:
    commit: str  # first 12 hex digits, "-dirty" appended for an uncommitted tree
    time: str
    value: float


@dataclass
class Series:
    key: tuple  # SERIES_FIELDS
    unit: str
    direction: str
    points: list[Point] = field(default_factory=list)

    @property
    def label(self) -> str:
        op, fmt, backend, variant, case = self.key
        return f"{op} {fmt} {backend}/{variant} {case}".strip()


def commit_label(record: dict) -> str:
    env = record["env"] if isinstance(record["env"], dict) else {}
    head = env.get("commit")
    return (head[:12] if head else "uncommitted") + ("-dirty" if env.get("dirty") else "")


def same_format(record_format: str, wanted: str) -> bool:
    """Equal specs, or specs naming the same format with the same options (defaults written or not)."""
    if record_format == wanted:
        return True
    try:
        return formats.get(record_format).spec == formats.get(wanted).spec
    except FormatError:
        return False


def history(records: list[dict], metric: str, formats_wanted: list[str] | None = None, ops: list[str] | None = None,
            backends: list[str] | None = None, variants: list[str] | None = None,
            cases: list[str] | None = None) -> list[Series]:
    """The series of `metric` matching the filters (None: any)."""
    chosen = [r for r in records if r["metric"] == metric
              and (not formats_wanted or any(same_format(r["format"], f) for f in formats_wanted))
              and (not ops or r["op"] in ops) and (not backends or r["backend"] in backends)
              and (not variants or r["variant"] in variants) and (not cases or r["case"] in cases)]
    if not chosen:
        raise UserError(_nothing_found(records, metric, formats_wanted))
    newest: dict[tuple, dict[str, tuple]] = {}
    for order, rec in enumerate(chosen):
        key = tuple(rec[f] for f in SERIES_FIELDS)
        time = (rec["env"].get("time") if isinstance(rec["env"], dict) else None) or ""
        per_commit = newest.setdefault(key, {})
        label = commit_label(rec)
        if label not in per_commit or (time, order) >= per_commit[label][0]:
            per_commit[label] = ((time, order), rec)
    out = []
    for key, per_commit in newest.items():
        last = max(per_commit.values(), key=lambda pair: pair[0])[1]
        points = sorted((Point(label, rank[0], rec["value"]) for label, (rank, rec) in per_commit.items()),
                        key=lambda p: p.time)
        out.append(Series(key, last["unit"], last["direction"], points))
    return out


def _nothing_found(records: list[dict], metric: str, formats_wanted) -> str:
    metrics = sorted({r["metric"] for r in records})
    if metric not in metrics:
        return f"no records of metric {metric!r}; metrics in the results: {', '.join(metrics) or 'none'}"
    fmts = sorted({r["format"] for r in records if r["metric"] == metric})
    return (f"no {metric} records match format {', '.join(formats_wanted or [])} and the other filters; "
            f"formats with {metric}: {', '.join(fmts)}")


def commit_order(series: list[Series]) -> list[str]:
    """Every commit of the series, ordered by its newest record time."""
    newest: dict[str, str] = {}
    for s in series:
        for p in s.points:
            newest[p.commit] = max(newest.get(p.commit, ""), p.time)
    return sorted(newest, key=lambda c: newest[c])


def rows(series: list[Series]) -> list[dict]:
    out = []
    for s in series:
        for p in s.points:
            out.append(dict(zip(SERIES_FIELDS, s.key), commit=p.commit, time=p.time, value=p.value, unit=s.unit))
    return sorted(out, key=lambda r: (r["time"], r["op"], r["format"], r["backend"], r["variant"], r["case"]))


COLUMNS = ["commit", "time", "op", "format", "backend", "variant", "case", "value", "unit"]


def default_plot_path(folder: Path, metric: str, formats_wanted: list[str] | None) -> Path:
    name = "-".join(["history", metric, *(formats_wanted or [])])
    return folder / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", name) + ".png")


def plot(series: list[Series], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = commit_order(series)
    x_of = {c: i for i, c in enumerate(order)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(order) + 3), 4.5), layout="constrained")
    for s in series:
        ax.plot([x_of[p.commit] for p in s.points], [p.value for p in s.points], marker="o", label=s.label)
    ax.set_xticks(range(len(order)), [c[:7] + ("*" if c.endswith("-dirty") else "") for c in order],
                  rotation=45, ha="right")
    units = sorted({s.unit for s in series})
    directions = sorted({s.direction for s in series})
    ax.set_ylabel(f"{metric} [{', '.join(units)}]")
    ax.set_xlabel("commit (ordered by record time; * uncommitted changes)")
    ax.set_title(f"{metric} over commits ({' / '.join(directions)} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
