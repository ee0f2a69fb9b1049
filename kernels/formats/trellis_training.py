"""Reconstruction tables trained for a unit Gaussian source, reproducibly, cached in memory and on disk.

Lloyd's algorithm over trellis paths: encode a seeded N(0,1) training set with the exact (free
start) Viterbi search, move each state's value toward the mean of the inputs its paths assigned
to it, repeat. Two choices speed it up and improve where it lands:
  * the table is kept antisymmetric, table[~s] = -table[s] (the complement state of a path that
    codes -x codes x mirrored), so each update pools a state with its complement;
  * updates are over-relaxed (step RELAX > 1 toward the mean), which converges in fewer passes.
Training is deterministic (seeded data, float32 search, float64 sums), so the same table comes out
on every machine; the stored copies only save the time (about 40 s a table on 2 cores).

Where a table is found, in order: memory; the package's trellis_tables/trained-k<k>-L<L>.json,
shipped for the trellises the formats use by default and remade by `quantbench train-codebook
--gaussian --bits <k>` (used only when its plan tag is this plan's); the disk cache,
$QUANTBENCH_CACHE, else the results folder's cache/ ($QUANTBENCH_RESULTS/cache or results/cache),
written atomically (temporary file, then rename); else trained now and cached.
"""
from __future__ import annotations

import functools
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantbench.kernels.formats.trellis import CODE_SEED, Trellis, random_code
from quantbench.kernels.storage import cache_dir, write_atomic

RELAX = 1.8
VERSION = 1  # bump when the training procedure changes: old cache and shipped files are then ignored
SHIPPED_DIR = Path(__file__).parent / "trellis_tables"


@dataclass(frozen=True)
class TrainingPlan:
    values: int  # training values (N(0,1), seeded)
    sequence: int  # values per training sequence
    iterations: int

    @property
    def tag(self) -> str:
        return f"n{self.values}_T{self.sequence}_it{self.iterations}_r{RELAX}_v{VERSION}"


def plan_for(trellis: Trellis) -> TrainingPlan:
    """At least 2**19 training values (256 per state beyond L = 11), 100 passes.

    Fewer values over-fit the small trellises: at L = 9, k = 2, 2**17 values and 40 passes give a
    held-out tail-biting MSE of 0.0763, 2**19 values and 100 passes 0.0750 (about 40 s on 2 cores,
    once; L = 12 takes a few minutes)."""
    return TrainingPlan(values=max(1 << 19, 256 << trellis.L), sequence=256, iterations=100)


def antisymmetric(table: np.ndarray) -> np.ndarray:
    comp = table[::-1]  # state s and its complement (2**L - 1 - s)
    return ((table - comp) / 2).astype(np.float32)


def training_data(trellis: Trellis, plan: TrainingPlan) -> np.ndarray:
    """The plan's seeded N(0, 1) training sequences, float32 [values / sequence, sequence]."""
    rng = np.random.default_rng(CODE_SEED + 1000 + trellis.L)
    return rng.standard_normal((plan.values // plan.sequence, plan.sequence)).astype(np.float32)


def train_table(trellis: Trellis, plan: TrainingPlan, init: np.ndarray | None = None) -> np.ndarray:
    return lloyd_over_paths(training_data(trellis, plan), trellis, plan.iterations,
                            random_code(trellis.L) if init is None else init)


def lloyd_over_paths(x: np.ndarray, trellis: Trellis, iterations: int, init: np.ndarray) -> np.ndarray:
    """The table after `iterations` antisymmetric, over-relaxed Lloyd passes from `init` on the
    training sequences x (float32 [n, length], unit variance)."""
    from quantbench.kernels.formats.trellis_numba import viterbi_paths

    n_states = trellis.n_states
    flat = x.ravel().astype(np.float64)
    table = antisymmetric(init)
    free = np.zeros(x.shape[0], np.int64)
    for _ in range(iterations):
        states = viterbi_paths(x, table, trellis.k, trellis.L, free, False).ravel()
        sums = np.bincount(states, weights=flat, minlength=n_states)
        counts = np.bincount(states, minlength=n_states).astype(np.float64)
        sums, counts = sums - sums[::-1], counts + counts[::-1]
        updated = table.astype(np.float64)
        seen = counts > 0
        updated[seen] += RELAX * (sums[seen] / counts[seen] - updated[seen])
        table = updated.astype(np.float32)
    return table


def cache_path(trellis: Trellis, plan: TrainingPlan) -> Path:
    return cache_dir() / f"tcq_table_k{trellis.k}_L{trellis.L}_{plan.tag}.npy"


def shipped_path(trellis: Trellis) -> Path:
    return SHIPPED_DIR / f"trained-k{trellis.k}-L{trellis.L}.json"


def _valid(table, trellis: Trellis) -> bool:
    return table is not None and table.shape == (trellis.n_states,) and table.dtype == np.float32 \
        and bool(np.isfinite(table).all())


def _read_shipped(trellis: Trellis, plan: TrainingPlan) -> np.ndarray | None:
    path = shipped_path(trellis)
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if (entry["k"], entry["L"], entry["plan"]) != (trellis.k, trellis.L, plan.tag):
            return None
        table = np.asarray(entry["table"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return table if _valid(table, trellis) else None


def _read_cached(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # unreadable cache file: train again and replace it


@functools.lru_cache(maxsize=None)
def trained_table(trellis: Trellis) -> np.ndarray:
    """The trained table for this trellis: from memory, the shipped file, the disk cache, else trained now."""
    plan = plan_for(trellis)
    table = _read_shipped(trellis, plan)
    if table is not None:
        return table
    path = cache_path(trellis, plan)
    table = _read_cached(path)
    if _valid(table, trellis):
        return table
    print(f"training the TCQ table k={trellis.k} L={trellis.L} (once; cached in {path.parent})",
          file=sys.stderr, flush=True)
    table = train_table(trellis, plan)
    _save_atomic(path, table)
    return table


def ship_table(trellis: Trellis) -> Path:
    """Train this trellis's table afresh and write it as the package's shipped copy (with the
    command that remakes it); returns the file's path."""
    plan = plan_for(trellis)
    table = train_table(trellis, plan)
    entry = {"k": trellis.k, "L": trellis.L, "plan": plan.tag, "source": "Lloyd over trellis paths on seeded N(0, 1)",
             "command": f"quantbench train-codebook --gaussian --bits {trellis.k}",
             "table": [float(v) for v in table]}
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    write_atomic(shipped_path(trellis), (json.dumps(entry, indent=1) + "\n").encode("utf-8"))
    trained_table.cache_clear()
    return shipped_path(trellis)


def _save_atomic(path: Path, table: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, table, allow_pickle=False)
    write_atomic(path, buffer.getvalue())
