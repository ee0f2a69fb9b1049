"""Records and the results store.

One record per (op, format, backend, variant, case, metric):
    op, format, backend, variant, case, metric, value, unit, direction ("lower"/"higher" is
    better), samples (raw measurements, may be empty), env (commit, dirty, device, versions,
    time; newer records also cpu_model, cpu_flags, threads and load_avg) and command (the command
    line that reproduces it). Optional: rounds (bench's per-round medians), contention (the reasons
    harness/contention.py found to distrust the run's timings; empty when none) and experiment (an
    object: what an experiment's verdict was decided from).

Records are JSON lines under `results/` (one file per commit: `results/<commit12>[-dirty].jsonl`,
or the path given). Appends are atomic: the new file is written beside the old one, fsynced, and
renamed over it, under an exclusive lock; a file that does not parse is reported with its line
number and never rewritten.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shlex
import sys
from pathlib import Path

from quantbench.kernels.storage import results_dir, write_atomic

from . import env as envmod

FIELDS = ("op", "format", "backend", "variant", "case", "metric", "value", "unit", "direction",
          "samples", "env", "command")
DIRECTIONS = ("lower", "higher")


class ResultsError(RuntimeError):
    """A results file that is missing, corrupt or holds malformed records."""


_command: str | None = None


def set_command(argv: list[str]) -> None:
    """Record the command line that produces this process's results (the CLI calls this)."""
    global _command
    _command = shlex.join(argv)


def current_command() -> str:
    """The command that reproduces records made now, quoted so it can be pasted into a shell."""
    return _command if _command is not None else shlex.join(sys.argv)


def make_record(op: str, format: str, backend: str, variant: str, case: str, metric: str,
                value: float, unit: str, direction: str, samples=(), env: dict | None = None,
                command: str | None = None, device: str = "cpu", rounds=(), contention=None) -> dict:
    """One record. `rounds` (optional field): the medians of the rounds the samples were taken in,
    spread over the whole run (bench); compare tests between-run noise on them. `contention`
    (optional field, kept when not None): the reasons to distrust the run's timings."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"record {op}/{format}/{metric}: value {value} is not finite")
    record = {
        "op": op, "format": format, "backend": backend, "variant": variant, "case": case,
        "metric": metric, "value": value, "unit": unit, "direction": direction,
        "samples": [float(s) for s in samples],
        "env": env if env is not None else envmod.environment(device),
        "command": command if command is not None else current_command(),
    }
    if len(rounds):
        record["rounds"] = [float(r) for r in rounds]
    if contention is not None:
        record["contention"] = list(contention)
    return record


def default_path() -> Path:
    head, dirty = envmod.commit()
    stem = (head[:12] if head else "uncommitted") + ("-dirty" if dirty else "")
    return results_dir() / f"{stem}.jsonl"


TEXT_FIELDS = ("op", "format", "backend", "variant", "case", "metric", "unit", "command")


def validate(record: dict, where: str = "record") -> None:
    """The record's schema: every field present, with its type; value and samples finite numbers."""
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ResultsError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in TEXT_FIELDS:
        if not isinstance(record[name], str):
            raise ResultsError(f"{where}: field {name}: expected a string, got {record[name]!r}")
    if record["direction"] not in DIRECTIONS:
        raise ResultsError(f"{where}: field direction: {record['direction']!r} is not lower/higher")
    if not _finite_number(record["value"]):
        raise ResultsError(f"{where}: field value: expected a finite number, got {record['value']!r}")
    samples = record["samples"]
    if not isinstance(samples, list) or not all(_finite_number(s) for s in samples):
        raise ResultsError(f"{where}: field samples: expected a list of finite numbers, got {samples!r:.80}")
    rounds = record.get("rounds", [])
    if not isinstance(rounds, list) or not all(_finite_number(r) for r in rounds):
        raise ResultsError(f"{where}: field rounds: expected a list of finite numbers, got {rounds!r:.80}")
    if not isinstance(record["env"], dict):
        raise ResultsError(f"{where}: field env: expected an object, got {record['env']!r:.80}")
    _validate_env(record["env"], where)
    contention = record.get("contention", [])
    if not isinstance(contention, list) or not all(isinstance(c, str) for c in contention):
        raise ResultsError(f"{where}: field contention: expected a list of strings, got {contention!r:.80}")
    if not isinstance(record.get("experiment", {}), dict):
        raise ResultsError(f"{where}: field experiment: expected an object, got {record['experiment']!r:.80}")


def _validate_env(env: dict, where: str) -> None:
    """The env fields newer records carry (older ones lack them): each with its type when present."""
    if not isinstance(env.get("cpu_model", ""), str):
        raise ResultsError(f"{where}: field env.cpu_model: expected a string, got {env['cpu_model']!r:.80}")
    flags = env.get("cpu_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise ResultsError(f"{where}: field env.cpu_flags: expected a list of strings, got {flags!r:.80}")
    counts = env.get("threads", {})
    if not isinstance(counts, dict) or not all(_count(n) for n in counts.values()):
        raise ResultsError(f"{where}: field env.threads: expected an object of counts of at least 1, "
                           f"got {counts!r:.80}")
    if "load_avg" in env and not (_finite_number(env["load_avg"]) and env["load_avg"] >= 0):
        raise ResultsError(f"{where}: field env.load_avg: expected a number of at least 0, got {env['load_avg']!r:.80}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def append(records: list[dict], path: str | Path | None = None) -> Path:
    """Atomically append records to a JSON-lines file; returns the path written."""
    path = Path(os.path.realpath(path)) if path else default_path()  # through a symlink, to its target
    for i, rec in enumerate(records):
        validate(rec, f"record {i}")
    if path.is_dir():
        raise ResultsError(f"{path}: is a folder, not a results file (give a .jsonl path)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            _append_locked(path, records)
    except OSError as exc:
        raise ResultsError(f"{exc.filename or path}: cannot write results: {exc.strerror or exc}") from None
    return path


def _append_locked(path: Path, records: list[dict]) -> None:
    _remove_stale_temporaries(path)
    existing = b""
    if path.exists():
        existing = path.read_bytes()
        _parse(existing.decode("utf-8", errors="replace"), path)  # refuse to extend a corrupt file
        if existing and not existing.endswith(b"\n"):
            raise ResultsError(f"{path}: last line is incomplete (half-written file); not appending")
    payload = existing + "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    write_atomic(path, payload)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of this results file left by a writer that died mid-append. Called under the
    lock, which every writer holds while its temporary exists, so any found now is stale."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        print(f"results: removing {stale.name}, left by an interrupted write", file=sys.stderr)
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path):
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_records(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"results file not found: {path}")
    if path.is_dir():
        records = []
        for child in sorted(path.glob("*.jsonl")):
            records.extend(read_records(child))
        return records
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not a text results file ({exc})") from None
    return _parse(text, path)


def _parse(text: str, path: Path) -> list[dict]:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{lineno}: corrupt record ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ResultsError(f"{path}:{lineno}: record is not a JSON object")
        validate(rec, f"{path}:{lineno}")
        records.append(rec)
    return records


def load(path: str | Path):
    """Records of a results file (or every file in a folder) as a pandas DataFrame.

    The env dict is kept in `env` and its commonly filtered parts are lifted into columns
    `commit`, `dirty`, `device` and `time`.
    """
    import pandas as pd

    records = read_records(path)
    frame = pd.DataFrame.from_records(records, columns=list(FIELDS))
    for key in ("commit", "dirty", "device", "time"):
        frame[key] = [r["env"].get(key) if isinstance(r["env"], dict) else None for r in records]
    return frame
