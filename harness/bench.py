"""Run variants over cases: validate once against the reference, time, and derive GB/s, % of the
measured copy bandwidth, arithmetic intensity and speedup against the op's baseline; check the run
for contention (harness/contention.py), warn, and mark its records."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

from quantbench.kernels import formats as formats_registry
from quantbench.kernels.errors import FormatError, UserError
from quantbench.kernels.registry import Case, Unavailable, Variant, get_op, variants

from . import contention as contention_check
from . import results as results_store
from . import threads
from .peak import COPY_BYTES, copy_bandwidth
from .timing import Timing, TimingConfig, time_callable


@dataclass
class BenchResult:
    case: Case
    variant: Variant
    timing: Timing | None = None
    status: str = "ok"  # "ok", "unavailable: <reason>", "skipped: <reason>", "failed: <reason>"
    bytes: int = 0
    flops: float = 0.0
    peak_bytes_per_s: float = 0.0
    speedup: float | None = None
    contention: list[str] = field(default_factory=list)  # the run's reasons to distrust its timings

    @property
    def device(self) -> str:
        return self.case.device

    @property
    def gbps(self) -> float | None:
        return self.bytes / self.timing.median / 1e9 if self.timing else None

    @property
    def pct_peak(self) -> float | None:
        return 100 * self.bytes / self.timing.median / self.peak_bytes_per_s if self.timing else None

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0

    def row(self) -> dict:
        t = self.timing
        return {
            "op": self.case.op, "format": self.case.format, "backend": self.variant.backend,
            "variant": self.variant.name, "shape": self.case.shape_id,
            "time_us": t.median * 1e6 if t else None,
            "noise_pct": 100 * t.noise if t else None,
            "gbps": self.gbps, "pct_peak": self.pct_peak,
            "flop_per_byte": round(self.intensity, 3),
            "speedup": self.speedup, "status": self.status,
        }


ROUND_ROBIN_BYTES = 1 << 30  # case data (the op's traffic model) timed round-robin at once

COLUMNS = ["op", "format", "backend", "variant", "shape", "time_us", "noise_pct", "gbps", "pct_peak",
           "flop_per_byte", "speedup", "status"]


def select(op: str, formats: list[str] | None, backends: list[str] | None,
           names: list[str] | None = None) -> list[tuple[Variant, str]]:
    """(variant, format spec) pairs to run for an op."""
    op_obj = get_op(op)
    specs = formats or (op_obj.formats() if op_obj.formats else None)
    if specs is None:
        raise ValueError(f"op {op} needs --format")
    pairs = []
    for spec in specs:
        formats_registry.get(spec)  # an unknown format or bad option fails here, naming it
        # the baseline first (speedups refer to it), the rest in the order they were registered
        for v in sorted(variants(op=op, format=spec), key=lambda v: v.key[1:] != op_obj.baseline):
            if backends and v.backend not in backends:
                continue
            if names and v.name not in names:
                continue
            pairs.append((v, spec))
    return pairs


def run_bench(op: str, pairs: list[tuple[Variant, str]], cases_for=None, config: TimingConfig | None = None,
              validate: bool = True, progress: bool = True) -> list[BenchResult]:
    """Time each (variant, format) on each of its cases; `cases_for(spec)` defaults to the op's.

    Cases are built and checked, then timed in `config.rounds` rounds, round-robin, each round a
    share of the budget, so that a case's rounds are spread over the run and their spread shows
    the machine's noise (compare gates on it). Cases are built a group at a time, up to
    ROUND_ROBIN_BYTES of case data, so the large default cases never all live at once. Then the run
    is checked for contention: each reason is printed as a warning and kept on every result."""
    op_obj = get_op(op)
    cases_for = cases_for or op_obj.default_cases
    config = config or TimingConfig()
    out: list[BenchResult] = []
    built: list[tuple[BenchResult, object]] = []
    held = 0
    for i, (v, spec) in enumerate(pairs):
        for case in cases_for(spec):
            if progress:
                print(f"[{i + 1}/{len(pairs)}] {op} {spec} {v.backend}/{v.name} {case.shape_id}",
                      file=sys.stderr, flush=True)
            result, fn = _prepare(op_obj, v, case, validate)
            out.append(result)
            if fn is None:
                continue
            if built and held + result.bytes > ROUND_ROBIN_BYTES:
                _time_in_rounds(built, config)
                built, held = [], 0
            built.append((result, fn))
            held += result.bytes
    _time_in_rounds(built, config)
    _fill_speedups(out, op_obj.baseline)
    timed = [contention_check.Timed(_name(r), r.timing.samples_s, f"{r.case.format}/{r.variant.backend}/"
                                    f"{r.variant.name}@{r.device}", r.bytes, r.flops) for r in out if r.timing]
    reasons = contention_check.check_contention(threads.in_use(), timed)
    contention_check.warn(reasons)
    for r in out:
        r.contention = reasons
    return out


def _name(result: BenchResult) -> str:
    return f"{result.case.id}/{result.variant.backend}/{result.variant.name}"


def _prepare(op_obj, v: Variant, case: Case, validate: bool) -> tuple[BenchResult, object]:
    """(result, callable to time), the callable None when the case cannot run or is wrong."""
    try:
        op_obj.check_case(case)  # a format that cannot hold this case skips it; the other cases run
    except (UserError, FormatError) as exc:
        return BenchResult(case, v, status=f"skipped: {exc}"), None
    reason = v.availability()
    if reason:
        return BenchResult(case, v, status=f"unavailable: {reason}"), None
    case = case.with_device(v.run_device())
    result = BenchResult(case, v, bytes=op_obj.bytes(case), flops=op_obj.flops(case))
    try:
        fn = v.build(case)
        if validate and op_obj.check:
            op_obj.check(case, fn(), op_obj.reference(case))
    except Unavailable as exc:
        result.status = f"unavailable: {exc}"
        return result, None
    except AssertionError as exc:
        result.status = f"failed: wrong result: {exc}"
        return result, None
    result.peak_bytes_per_s = copy_bandwidth(case.device)
    return result, fn


def _time_in_rounds(built: list[tuple[BenchResult, object]], config: TimingConfig) -> None:
    rounds = max(1, config.rounds)
    share = replace(config, budget_s=config.budget_s / rounds, min_repeats=max(1, -(-config.min_repeats // rounds)))
    later = replace(share, warmup=min(1, config.warmup))  # caches went cold while the other cases ran
    parts: list[list[Timing]] = [[] for _ in built]
    for r in range(rounds):
        for (result, fn), timings in zip(built, parts):
            timings.append(time_callable(fn, result.case.device, _name(result), share if r == 0 else later))
    for (result, _), timings in zip(built, parts):
        result.timing = Timing.from_rounds(timings) if rounds > 1 else timings[0]


def _fill_speedups(results: list[BenchResult], baseline: tuple[str, str]) -> None:
    base = {(r.case.format, r.case.dims): r.timing.median for r in results
            if r.timing and (r.variant.backend, r.variant.name) == baseline}
    for r in results:
        ref = base.get((r.case.format, r.case.dims))
        if r.timing and ref:
            r.speedup = ref / r.timing.median


def to_records(results: list[BenchResult]) -> list[dict]:
    records = []
    peaks = {}
    reasons = next((r.contention for r in results), [])
    for r in results:
        if not r.timing:
            continue
        common = dict(op=r.case.op, format=r.case.format, backend=r.variant.backend, variant=r.variant.name,
                      case=r.case.shape_id, device=r.device, contention=r.contention)
        records.append(results_store.make_record(metric="time", value=r.timing.median, unit="s",
                                                 direction="lower", samples=r.timing.samples_s,
                                                 rounds=r.timing.rounds, **common))
        records.append(results_store.make_record(metric="gbps", value=r.gbps, unit="GB/s",
                                                 direction="higher", **common))
        records.append(results_store.make_record(metric="pct_peak", value=r.pct_peak, unit="%",
                                                 direction="higher", **common))
        peaks[r.device] = r.peak_bytes_per_s
    for device, peak in peaks.items():
        records.append(results_store.make_record(
            op="copy", format="f32", backend="torch", variant="copy", case=f"bytes={2 * COPY_BYTES}",
            metric="copy_gbps", value=peak / 1e9, unit="GB/s", direction="higher", device=device,
            contention=reasons))
    return records
