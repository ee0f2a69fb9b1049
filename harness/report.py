"""The latest state of every measured row, as markdown tables, and the quality Pareto plot: KL
divergence against exact bits per value for every KV format.

"Latest" is the newest record of each (op, format, backend, variant, case, metric) in the results.
The Pareto plot takes the `quality` records of one setting (backend, variant, case): the one
covering the most formats, the newest on a tie, so that every point was measured the same way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

from .compare import ERR_SUFFIX, latest_by_key
from .errors import UserError
from .history import commit_label

QUALITY_OP = "quality"
PARETO_METRIC = "kld_mean"
TAIL_METRIC = "kld_p99"
OP_ORDER = ("quality", "prefill", "decode")  # model-level first, then kernels and the rest by name


@dataclass
class FormatPoint:
    format: str
    bits: float
    kld: float
    err: float | None = None
    p99: float | None = None
    on_front: bool = False


def _time(rec: dict) -> str:
    return (rec["env"].get("time") if isinstance(rec["env"], dict) else None) or ""


def _bits(latest: dict, setting: tuple, spec: str) -> float | None:
    rec = latest.get((QUALITY_OP, spec, *setting, "bits_per_value"))
    if rec:
        return rec["value"]
    try:
        fmt = formats.get(spec)
    except FormatError:
        return None
    m = re.search(r"(?:head_dim|dim)=(\d+)", setting[2])
    return fmt.bits_per_value_for(int(m.group(1))) if m else fmt.bits_per_value


def pareto_points(latest: dict[tuple, dict]) -> tuple[tuple | None, list[FormatPoint]]:
    """(the setting (backend, variant, case) plotted, its formats' points with the front marked)."""
    settings: dict[tuple, list[dict]] = {}
    for (op, _, backend, variant, case, metric), rec in latest.items():
        if op == QUALITY_OP and metric == PARETO_METRIC:
            settings.setdefault((backend, variant, case), []).append(rec)
    if not settings:
        return None, []
    setting = max(settings, key=lambda s: (len(settings[s]), max(_time(r) for r in settings[s])))
    points = []
    for rec in settings[setting]:
        bits = _bits(latest, setting, rec["format"])
        if bits is None:
            continue
        err, p99 = (latest.get((QUALITY_OP, rec["format"], *setting, m))
                    for m in (PARETO_METRIC + ERR_SUFFIX, TAIL_METRIC))
        points.append(FormatPoint(rec["format"], bits, rec["value"], err["value"] if err else None,
                                  p99["value"] if p99 else None))
    best = float("inf")
    for p in sorted(points, key=lambda p: (p.bits, p.kld)):
        if p.kld < best:
            p.on_front = True
            best = p.kld
    return setting, sorted(points, key=lambda p: p.bits)


def plot_pareto(points: list[FormatPoint], setting: tuple, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    positive = all(p.kld > 0 for p in points)
    ax.errorbar([p.bits for p in points], [p.kld for p in points],
                yerr=[p.err or 0 for p in points], fmt="o", color="tab:blue", label=f"{PARETO_METRIC} (± err)")
    tails = [p for p in points if p.p99 is not None]
    if tails:
        ax.scatter([p.bits for p in tails], [p.p99 for p in tails], marker="x", color="tab:gray", label=TAIL_METRIC)
    front = [p for p in points if p.on_front]
    ax.step([p.bits for p in front], [p.kld for p in front], where="post", color="tab:red", label="Pareto front")
    for p in points:
        ax.annotate(p.format, (p.bits, p.kld), textcoords="offset points", xytext=(5, 4), fontsize="small",
                    fontweight="bold" if p.on_front else "normal")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("bits per value (side data included)")
    ax.set_ylabel("KL divergence vs unquantized model [nats]")
    ax.set_title(f"KV formats: quality against size\n{setting[0]}/{setting[1]}, {setting[2]}", fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"


def tables_markdown(latest: dict[tuple, dict]) -> list[str]:
    """One table per op: a row per (format, backend, variant, case), a column per metric."""
    by_op: dict[str, dict[tuple, dict[str, dict]]] = {}
    for (op, fmt, backend, variant, case, metric), rec in latest.items():
        by_op.setdefault(op, {}).setdefault((fmt, backend, variant, case), {})[metric] = rec
    ops = sorted(by_op, key=lambda o: (OP_ORDER.index(o) if o in OP_ORDER else len(OP_ORDER), o))
    lines = []
    for op in ops:
        rows = by_op[op]
        metrics = list(dict.fromkeys(m for metrics in rows.values() for m in metrics))
        shown = [m for m in metrics if not (m.endswith(ERR_SUFFIX) and m[: -len(ERR_SUFFIX)] in metrics)]
        headers = []
        for m in shown:
            units = {r[m]["unit"] for r in rows.values() if m in r}
            arrow = "↓" if all(r[m]["direction"] == "lower" for r in rows.values() if m in r) else "↑"
            headers.append(f"{m} [{', '.join(sorted(u for u in units if u))}] {arrow}")
        lines += [f"## {op}", "", "| format | variant | case | " + " | ".join(headers) + " | commit |",
                  "|---|---|---|" + "---:|" * len(shown) + "---|"]
        for (fmt, backend, variant, case), recs in rows.items():
            cells = []
            for m in shown:
                rec, err = recs.get(m), recs.get(m + ERR_SUFFIX)
                cells.append(_fmt(rec["value"] if rec else None) + (f" ± {_fmt(err['value'])}" if rec and err else ""))
            newest = max(recs.values(), key=_time)
            lines.append(f"| {fmt} | {backend}/{variant} | {case} | " + " | ".join(cells)
                         + f" | {commit_label(newest)} |")
        lines.append("")
    return lines


def write_report(records: list[dict], out_dir: Path) -> tuple[Path, Path | None]:
    """results/report.md (+ pareto.png when there are quality records); returns their paths."""
    if not records:
        raise UserError("no records to report on")
    latest = latest_by_key(records)
    setting, points = pareto_points(latest)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_pareto(points, setting, out_dir / "pareto.png") if points else None
    commits = sorted({commit_label(r) for r in latest.values()})
    lines = ["# quantbench report", "",
             f"Newest record of every (op, format, backend, variant, case, metric); {len(latest)} rows "
             f"from {len(commits)} commit(s): {', '.join(commits)}. ↓ lower is better, ↑ higher is better.", ""]
    if points:
        lines += ["## Quality against size", "", f"![KLD against bits per value]({png.name})", "",
                  f"Setting: {setting[0]}/{setting[1]}, {setting[2]}. Pareto front (no format is both smaller "
                  f"and better): {', '.join(p.format for p in points if p.on_front)}.", "",
                  "| format | bits/value | kld_mean | kld_p99 | on front |", "|---|---:|---:|---:|---|"]
        lines += [f"| {p.format} | {p.bits:.4g} | {_fmt(p.kld)}{f' ± {_fmt(p.err)}' if p.err is not None else ''} | "
                  f"{_fmt(p.p99)} | {'yes' if p.on_front else ''} |" for p in points]
        lines.append("")
    else:
        lines += ["No `quality` records with kld_mean yet (run `quantbench quality`): no Pareto plot.", ""]
    lines += tables_markdown(latest)
    md = out_dir / "report.md"
    md.write_text("\n".join(lines))
    return md, png
