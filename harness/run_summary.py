"""What `quantbench run` prints besides its tables: unavailable variants folded into one line per
backend and reason, and the closing summary of what the run found (the KV formats on the
KLD-vs-bits Pareto front, the fastest variant per op and format, where decode time goes)."""
from __future__ import annotations

from collections import defaultdict

UNAVAILABLE = "unavailable"


def fold_unavailable(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """(the rows that ran or failed, one line per backend and reason for the rest)."""
    kept, folded = [], defaultdict(list)
    for row in rows:
        if row["status"].startswith(UNAVAILABLE):
            folded[(row["backend"], row["status"])].append(row)
        else:
            kept.append(row)
    lines = []
    for (backend, status), group in folded.items():
        variants = sorted({r["variant"] for r in group})
        lines.append(f"{backend}: {len(group)} cases of {len(variants)} variants ({', '.join(variants)}) "
                     f"{status}")
    return kept, lines


def pareto_front(quality_rows: list[dict]) -> list[dict]:
    """The KV formats no other beats on both bits per value and mean KLD, fewest bits first."""
    rows = sorted((r for r in quality_rows if r.get("kld_mean") is not None),
                  key=lambda r: (r["bits_per_value"], r["kld_mean"]))
    front, best = [], float("inf")
    for row in rows:
        if row["kld_mean"] < best:
            front.append(row)
            best = row["kld_mean"]
    return front


def fastest_variants(kernel_rows: list[dict]) -> list[str]:
    """Per op, the fastest backend/variant for each format that has more than one, over the run's
    cases (median time summed over the cases every variant of that format ran)."""
    times: dict[tuple, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))
    for row in kernel_rows:
        if row["status"] == "ok" and row["time_us"] is not None:
            times[(row["op"], row["format"])][f"{row['backend']}/{row['variant']}"][row["shape"]] = row["time_us"]
    per_op: dict[str, list[str]] = defaultdict(list)
    for (op, fmt), by_variant in times.items():
        shared = set.intersection(*(set(shapes) for shapes in by_variant.values()))
        if len(by_variant) < 2 or not shared:
            continue
        totals = {name: sum(shapes[s] for s in shared) for name, shapes in by_variant.items()}
        best = min(totals, key=totals.get)
        slowest = max(totals.values())
        per_op[op].append(f"{fmt} {best}, {slowest / totals[best]:.1f}x the slowest")
    return [f"{op}: " + "; ".join(entries) for op, entries in per_op.items()]


def decode_time(throughput_rows: list[dict]) -> list[str]:
    """Per KV format, the deepest decode test's tokens/s against the first format's, and its split
    into cache write, attention, matmul and the rest."""
    decode = [r for r in throughput_rows if r["test"].startswith("tg")]
    if not decode:
        return []
    depth = max(r["depth"] for r in decode)
    deepest = [r for r in decode if r["depth"] == depth]
    base = deepest[0]
    lines = []
    for r in deepest:
        ratio = r["tok/s"] / base["tok/s"] if base["tok/s"] else float("nan")
        split = ", ".join(f"{name} {r[name]}" for name in ("write %", "attn %", "matmul %", "rest %")
                          if r.get(name) is not None)
        lines.append(f"{r['kv']} {r['test']} at depth {depth}: {r['tok/s']} tok/s ({ratio:.2f}x {base['kv']}); {split}")
    return lines


def closing_summary(kernel_rows: list[dict], quality_rows: list[dict], throughput_rows: list[dict]) -> list[str]:
    lines = []
    front = pareto_front(quality_rows)
    if front:
        lines.append("KV formats on the KLD-vs-bits Pareto front (the best at each bits budget):")
        lines += [f"  <= {r['bits_per_value']:.4g} bits: {r['kv']} (KLD {r['kld_mean']:.4g})" for r in front]
    fastest = fastest_variants(kernel_rows)
    if fastest:
        lines.append("Fastest variant per op and format (over the run's cases):")
        lines += [f"  {line}" for line in fastest]
    decode = decode_time(throughput_rows)
    if decode:
        lines.append("Where decode time goes:")
        lines += [f"  {line}" for line in decode]
    return lines
