"""Compare two runs metric by metric, each in its own direction, and decide per row: improved,
regressed, unchanged or inconclusive.

Rows match on (op, format, backend, variant, case, metric); where a side holds several records of
a row, the newest (env time, then file order) is used, except that a row with runs on both sides
(below) compares the medians of its runs. A threshold is a relative change ("5%")
or an absolute one ("0.001"), counted in the metric's bad direction (up for lower-is-better
metrics such as time and KLD, down for higher-is-better ones such as tokens/s).

How a row is decided (the first rule that applies):
- an uncertainty on both sides (a `<metric>_err` record of the same row: the producer's standard
  error of the value, e.g. kld_mean_err): the difference is significant when it exceeds
  z * sqrt(err_base^2 + err_new^2) (z = 1.96 at 95%), and its interval is the difference +- that;
- replicates on both sides, best first: the row's values in >= 3 runs per side (records of the
  same row in the side's files), else its round medians (>= 3 rounds, bench), else its samples
  (>= 2): a Mann-Whitney U test (alpha, default 0.05) says whether the two differ, a bootstrap
  interval (fixed seed) of the ratio of the statistic the value is (median, or the samples' mean)
  says by how much, and the spread of the runs or rounds, (max - min) / median on either side, is
  a noise floor the change must exceed too (samples of one burst give no floor);
- GB/s and % of peak (stored without samples: bytes / median time) take the test, the relative
  interval and the floor of the same benchmark's time;
- a single value without uncertainty: the change as it is (significant whenever nonzero).
Then: significant, beyond the floor and worse by more than the threshold -> regressed; the same but
better -> improved; the whole interval within the threshold -> unchanged; anything else (the noise
reaches past the threshold) -> inconclusive. gbps, pct_peak and copy_gbps move with the copy
bandwidth measured in the same run, so they are compared only when --fail names them.
"""
from __future__ import annotations

import math
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import results as results_store
from .errors import UserError
from .results import ResultsError
from .stats_tests import bootstrap_ratio, mann_whitney_u

OUTCOMES = ("regressed", "improved", "inconclusive", "unchanged")
KEY_FIELDS = ("op", "format", "backend", "variant", "case", "metric")
ERR_SUFFIX = "_err"
TIME_DERIVED = ("gbps", "pct_peak")  # bench.to_records: bytes / median time, stored without samples
# metrics derived from a time and the copy bandwidth measured in the same run: they move with the
# machine's state as much as with the kernel, so they are compared only when --fail names them
NOT_GATED_BY_DEFAULT = (*TIME_DERIVED, "copy_gbps")
MIN_SAMPLES = 2
MIN_ROUNDS = 3
MIN_RUNS = 3
RUNS_TEST = "mann-whitney (runs)"


@dataclass(frozen=True)
class Threshold:
    amount: float  # a fraction when relative, else in the metric's unit
    relative: bool = True
    sign: int | None = None  # +1 / -1 when written "+x" / "-x": the bad direction, checked against the records

    def __str__(self) -> str:
        sign = {1: "+", -1: "-", None: "±"}[self.sign]
        return f"{sign}{self.amount * 100:g}%" if self.relative else f"{sign}{self.amount:g}"


def parse_threshold(text: str) -> Threshold:
    """'5%', '+5%', '-5%', '0.001': relative (with %) or absolute (without)."""
    m = re.fullmatch(r"\s*([+-])?\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*(%)?\s*", text)
    if not m:
        raise UserError(f"threshold {text!r}: expected a number with an optional sign and %, e.g. +5% or 0.001")
    amount = float(m.group(2) + (f"e{m.group(3)}" if m.group(3) else ""))
    sign = {"+": 1, "-": -1, None: None}[m.group(1)]
    relative = m.group(4) is not None
    return Threshold(amount / 100 if relative else amount, relative, sign)


def parse_fail(text: str) -> tuple[str, Threshold]:
    """'time:+5%' -> ('time', Threshold)."""
    metric, sep, rest = text.rpartition(":")
    if not sep or not metric.strip():
        raise UserError(f"--fail {text!r}: expected METRIC:THRESHOLD, e.g. time:+5% or decode_tok_s:-5%")
    return metric.strip(), parse_threshold(rest)


# ---- loading ---------------------------------------------------------------------------------
def resolve(spec: str, folder: Path | None = None) -> Path:
    """A results file or folder, or a commit (prefix, or a git ref) with files in the results folder."""
    path = Path(spec)
    if path.exists():
        return path
    folder = folder or results_store.results_dir()
    exact = folder / f"{spec}.jsonl"
    if exact.exists():
        return exact
    if folder.is_dir():
        for prefix in _commit_prefixes(spec):
            matches = sorted(folder.glob(f"{prefix}*.jsonl"))
            commits = sorted({m.stem.removesuffix("-dirty") for m in matches})
            if len(commits) > 1:
                raise ResultsError(f"{spec!r} is ambiguous in {folder}: matches commits {', '.join(commits)}")
            if matches:
                clean = [m for m in matches if not m.stem.endswith("-dirty")]
                return (clean or matches)[0]
    raise ResultsError(f"{spec!r}: no such results file, and no {folder}/{spec}*.jsonl for a commit of that name")


def _commit_prefixes(spec: str) -> list[str]:
    out = []
    if re.fullmatch(r"[0-9a-fA-F]{4,40}", spec):
        out.append(spec.lower()[:12])
    try:
        git = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return out
    if git.returncode == 0 and git.stdout.strip():
        out.append(git.stdout.strip()[:12])
    return out


def key_of(record: dict) -> tuple:
    return tuple(record[f] for f in KEY_FIELDS)


def latest_by_key(records: list[dict]) -> dict[tuple, dict]:
    """The newest record of each (op, format, backend, variant, case, metric)."""
    out: dict[tuple, tuple] = {}
    for order, rec in enumerate(records):
        env = rec["env"] if isinstance(rec["env"], dict) else {}
        rank = (env.get("time") or "", order)
        key = key_of(rec)
        if key not in out or rank >= out[key][0]:
            out[key] = (rank, rec)
    return {k: rec for k, (_, rec) in out.items()}


@dataclass
class Side:
    label: str
    path: Path
    records: dict[tuple, dict]  # the newest record of each row
    runs: dict[tuple, list[dict]] = field(default_factory=dict)  # every record of each row, oldest first

    @property
    def devices(self) -> set[str]:
        return {r["env"].get("device") for r in self.records.values() if isinstance(r["env"], dict)} - {None}


def load_side(spec: str, folder: Path | None = None) -> Side:
    path = resolve(spec, folder)
    records = results_store.read_records(path)
    if not records:
        raise ResultsError(f"{path}: holds no records")
    runs: dict[tuple, list[dict]] = {}
    for rec in records:
        runs.setdefault(key_of(rec), []).append(rec)
    return Side(spec, path, latest_by_key(records), runs)


# ---- deciding --------------------------------------------------------------------------------
@dataclass
class Row:
    op: str
    format: str
    backend: str
    variant: str
    case: str
    metric: str
    unit: str
    direction: str
    base: float
    new: float
    change: float  # relative (fraction) or absolute, as the threshold is
    interval: tuple[float, float]  # of the change
    p: float | None
    test: str
    threshold: Threshold
    outcome: str = ""

    @property
    def worse(self) -> float:
        """The change counted positive in the metric's bad direction."""
        return self.change if self.direction == "lower" else -self.change

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "op": self.op, "format": self.format, "backend": self.backend,
                "variant": self.variant, "case": self.case, "metric": self.metric, "unit": self.unit,
                "direction": self.direction, "base": self.base, "new": self.new,
                "change": _change_text(self.change, self.threshold),
                "interval": _interval_text(self.interval, self.threshold),
                "p": self.p, "threshold": str(self.threshold), "test": self.test}


COLUMNS = ["outcome", "op", "format", "backend", "variant", "case", "metric", "unit", "base", "new", "change",
           "interval", "p", "threshold", "test"]


@dataclass
class Comparison:
    base: Side
    new: Side
    rows: list[Row]
    only_base: list[tuple] = field(default_factory=list)
    only_new: list[tuple] = field(default_factory=list)
    alpha: float = 0.05
    confidence: float = 0.95

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.rows)

    @property
    def regressed(self) -> bool:
        return self.count("regressed") > 0


def compare(base: Side, new: Side, fail: dict[str, Threshold] | None = None, default: Threshold | None = None,
            alpha: float = 0.05, confidence: float = 0.95) -> Comparison:
    """Rows for the metrics in `fail` (each with its threshold), or for every metric at `default`."""
    fail = fail or {}
    default = default or Threshold(0.05)
    keys = [k for k in base.records if k in new.records and _compared(k, base.records, fail)]
    rows = [_decide(k, base, new, fail.get(k[-1], default), alpha, confidence) for k in keys]
    rows.sort(key=lambda r: (OUTCOMES.index(r.outcome), r.op, r.format, r.backend, r.variant, r.case, r.metric))
    only_base = [k for k in base.records if k not in new.records and _compared(k, base.records, fail)]
    only_new = [k for k in new.records if k not in base.records and _compared(k, new.records, fail)]
    return Comparison(base, new, rows, only_base, only_new, alpha, confidence)


def _compared(key: tuple, records: dict, fail: dict) -> bool:
    metric = key[-1]
    if fail:
        return metric in fail
    is_uncertainty = metric.endswith(ERR_SUFFIX) and key[:-1] + (metric[: -len(ERR_SUFFIX)],) in records
    return not is_uncertainty and metric not in NOT_GATED_BY_DEFAULT


def _decide(key, base: Side, new: Side, threshold: Threshold, alpha: float, confidence: float) -> Row:
    b, n = base.records[key], new.records[key]
    direction = n["direction"]
    if b["direction"] != direction:
        raise ResultsError(f"{'/'.join(map(str, key))}: direction {b['direction']} in {base.label} "
                           f"but {direction} in {new.label}")
    bad_sign = 1 if direction == "lower" else -1
    if threshold.sign is not None and threshold.sign != bad_sign:
        want = "+" if bad_sign > 0 else "-"
        change = "an increase" if bad_sign > 0 else "a decrease"
        raise UserError(f"{key[-1]} is {direction}-is-better, so a regression is {change}: "
                        f"write {key[-1]}:{want}{str(threshold)[1:]}")
    err = _uncertainty(key, base.records, new.records)
    evidence = None if err is not None else _sample_evidence(key, b, n, base, new, confidence)
    ratio_ci, p, test, floor = evidence or (None, None, None, 0.0)
    bv, nv = (_run_median(base, key), _run_median(new, key)) if test == RUNS_TEST else (b["value"], n["value"])
    diff = nv - bv
    if ratio_ci is not None:  # a test on samples: interval of new/base
        significant = p < alpha
        lo, hi = ratio_ci
        interval = (bv * (lo - 1), bv * (hi - 1))
    elif err is not None:
        half = statistics.NormalDist().inv_cdf(0.5 + confidence / 2) * err
        significant = abs(diff) > half
        p = math.erfc(abs(diff) / err / math.sqrt(2)) if err > 0 else float(diff == 0)
        test = "value±err"
        interval = (diff - half, diff + half)
    else:
        significant = diff != 0
        test = "value"
        interval = (diff, diff)
    if threshold.relative:
        change = _relative(bv, nv)
        interval = (_relative(bv, bv + interval[0]), _relative(bv, bv + interval[1]))
    else:
        change = diff
    row = Row(*key[:5], metric=key[5], unit=n["unit"], direction=direction, base=bv, new=nv, change=change,
              interval=(min(interval), max(interval)), p=p, test=test, threshold=threshold)
    worse_lo, worse_hi = sorted((bad_sign * row.interval[0], bad_sign * row.interval[1]))
    beyond_noise = abs(_relative(bv, nv)) > floor  # the between-run noise the runs or rounds showed
    if significant and beyond_noise and row.worse > threshold.amount:
        row.outcome = "regressed"
    elif significant and beyond_noise and -row.worse > threshold.amount:
        row.outcome = "improved"
    elif -threshold.amount <= worse_lo and worse_hi <= threshold.amount:
        row.outcome = "unchanged"
    else:
        row.outcome = "inconclusive"
    return row


def _sample_evidence(key, b: dict, n: dict, base: Side, new: Side, confidence: float):
    """(interval of new/base, p-value, test name, noise floor) from rounds or samples, or None.

    With rounds on both sides (bench: medians of rounds spread over each run), the test and the
    interval are on the round medians, and the noise floor is the larger relative spread
    (max - min) / median of the two sides' rounds: a change inside what the machine varied by
    within one run is not called a regression, however many samples agree. Without rounds, the
    samples (a burst within one run) decide and the floor is 0. Best of all, a row measured in
    several runs on each side (the same command run again, appending to the same results file):
    the runs' values are the replicates, their medians the values compared (the newest run alone,
    if a burst hit it, could hide a 2x slowdown) and their spread the floor, which also covers what
    stays the same for a whole run but not between runs (a machine state, another job's load)."""
    run_b, run_n = base.runs.get(key, []), new.runs.get(key, [])
    if len(run_b) >= MIN_RUNS and len(run_n) >= MIN_RUNS:
        vb, vn = [r["value"] for r in run_b], [r["value"] for r in run_n]
        _, p = mann_whitney_u(vb, vn)
        return bootstrap_ratio(vb, vn, "median", confidence), p, RUNS_TEST, _spread(vb, vn)
    if len(b.get("rounds", ())) >= MIN_ROUNDS and len(n.get("rounds", ())) >= MIN_ROUNDS:
        rb, rn = b["rounds"], n["rounds"]
        _, p = mann_whitney_u(rb, rn)
        return bootstrap_ratio(rb, rn, "median", confidence), p, "mann-whitney (rounds)", _spread(rb, rn)
    if len(b["samples"]) >= MIN_SAMPLES and len(n["samples"]) >= MIN_SAMPLES:
        _, p = mann_whitney_u(b["samples"], n["samples"])
        ci = bootstrap_ratio(b["samples"], n["samples"], _statistic_of(b), confidence)
        return ci, p, "mann-whitney", 0.0
    time_key = key[:-1] + ("time",)
    if key[-1] in TIME_DERIVED and time_key in base.records and time_key in new.records:
        time_evidence = _sample_evidence(time_key, base.records[time_key], new.records[time_key], base, new,
                                         confidence)
        tb, tn = base.records[time_key], new.records[time_key]
        if time_evidence is not None and b["value"] and tb["value"]:
            (lo, hi), p, test, floor = time_evidence
            observed = n["value"] / b["value"]
            time_ratio = tn["value"] / tb["value"]
            label = "mann-whitney (time)" if test == "mann-whitney" else "mann-whitney (time rounds)"
            return (observed * time_ratio / hi, observed * time_ratio / lo), p, label, floor
    return None


def _spread(*sides: list[float]) -> float:
    """The larger (max - min) / median of the sides."""
    return max(((max(s) - min(s)) / statistics.median(s) for s in sides if statistics.median(s) > 0),
               default=0.0)


def _run_median(side: Side, key: tuple) -> float:
    return statistics.median(r["value"] for r in side.runs[key])


def _statistic_of(record: dict) -> str:
    """"mean" when the record's value is the mean of its samples, else "median"."""
    samples, value = record["samples"], record["value"]
    close = lambda x: abs(x - value) <= 1e-9 * max(abs(value), 1e-300)  # noqa: E731
    return "mean" if close(statistics.fmean(samples)) and not close(statistics.median(samples)) else "median"


def _uncertainty(key, base_records: dict, new_records: dict) -> float | None:
    err_key = key[:-1] + (key[-1] + ERR_SUFFIX,)
    if err_key in base_records and err_key in new_records:
        return math.hypot(base_records[err_key]["value"], new_records[err_key]["value"])
    return None


def _relative(base: float, new: float) -> float:
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - base) / abs(base)


# ---- reporting -------------------------------------------------------------------------------
def _change_text(change: float, threshold: Threshold) -> str:
    return f"{change * 100:+.1f}%" if threshold.relative else f"{change:+.4g}"


def _interval_text(interval: tuple[float, float], threshold: Threshold) -> str:
    return f"[{_change_text(interval[0], threshold)}, {_change_text(interval[1], threshold)}]"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def to_markdown(c: Comparison) -> str:
    verdict = "REGRESSION" if c.regressed else "no regression"
    counts = ", ".join(f"{c.count(o)} {o}" for o in OUTCOMES)
    thresholds = sorted({f"{r.metric} {r.threshold}" for r in c.rows})
    lines = [
        f"### quantbench compare: `{c.base.label}` → `{c.new.label}`",
        "",
        f"**{verdict}**: {counts} (of {len(c.rows)} rows). "
        f"Thresholds: {', '.join(thresholds) or 'none'}; Mann-Whitney alpha {c.alpha:g}; "
        f"{c.confidence:.0%} intervals.",
        "",
    ]
    if c.base.devices != c.new.devices:
        lines += [f"Note: base ran on {', '.join(sorted(c.base.devices)) or 'unknown'}, "
                  f"new on {', '.join(sorted(c.new.devices)) or 'unknown'}.", ""]
    if c.rows:
        lines += ["| outcome | op | format | variant | case | metric | base | new | change | "
                  f"{c.confidence:.0%} interval | p | threshold | test |",
                  "|---|---|---|---|---|---|---:|---:|---:|---|---:|---|---|"]
        for r in c.rows:
            outcome = f"**{r.outcome}**" if r.outcome == "regressed" else r.outcome
            unit = f" {r.unit}" if r.unit else ""
            lines.append(f"| {outcome} | {r.op} | {r.format} | {r.backend}/{r.variant} | {r.case} | {r.metric} | "
                         f"{_num(r.base)}{unit} | {_num(r.new)}{unit} | {_change_text(r.change, r.threshold)} | "
                         f"{_interval_text(r.interval, r.threshold)} | {_num(r.p)} | {r.threshold} | {r.test} |")
    for title, keys in ((f"Only in `{c.base.label}`", c.only_base), (f"Only in `{c.new.label}`", c.only_new)):
        if keys:
            lines += ["", f"{title} ({len(keys)}):", ""]
            lines += [f"- {k[0]} {k[1]} {k[2]}/{k[3]} {k[4]} {k[5]}" for k in keys[:20]]
            if len(keys) > 20:
                lines.append(f"- ... and {len(keys) - 20} more")
    return "\n".join(lines) + "\n"
