"""Contention: other work on the cores a run times its kernels on. Under it a parallel kernel waits
for the scheduler to give its worker threads a core, and times the wait (on a 2-core machine with one
core busy: a flat ~8 ms a call from 1 row to 4096, against 1.46 us on one thread), so every ratio of
such a run is wrong. `check_contention` gives the reasons to distrust a run (empty when none is
found); `flag` prints them as warnings and marks the run's records with them.

The rules:

1. **Load.** The 1-minute load average counts the runnable threads of the whole system, ours
   included, so our own busy threads must not count as contention. Our share is estimated from
   this process's CPU time (all threads) over its age (/proc/self/stat's start time against
   /proc/uptime): r = cpu_time / age threads on average, which the load's exponential average (time
   constant 60 s) has taken up as r * (1 - exp(-age / 60)). Sampling the load before the measurement
   instead would not separate ours from the others' either (the imports and the case building ran
   before it) and would miss load that starts during the run. The others' load is then the load
   minus our share, and the run is contended when it exceeds the cores the run leaves free,
   cpu_count - threads_used, by more than LOAD_TOLERANCE (a few daemons stay under it; one process
   busy on one core reaches 1.0 within a minute). Where the process's age cannot be read, our
   threads are taken as busy for the whole minute: the rule becomes load > cpu_count + tolerance.
   Limits: the load and cpu_count are the whole machine's (a process pinned to some of the cores
   is compared with all of them); the load lags by its minute, so a busy process that ended less
   than a minute ago (a previous run of a back-to-back loop included) still counts, decaying as
   exp(-t / 60); and Linux counts uninterruptible (I/O-waiting) threads as load too. Our share is
   measured as CPU time, so when our threads wait for a core (the contention sought) it is
   underestimated and the others' load over-: the rule errs towards warning. The lag is checked
   against the present: where /proc tells, the rule also needs another thread runnable at the
   check (/proc/loadavg's count of runnable threads, less this process's own threads in state R),
   so a previous run that ended seconds ago no longer marks this one.
2. **Oversubscription.** A run on more threads than the cores available to it contends with itself.
3. **Scheduler slices in the samples** (each timing separately). A sample is *slow* when it is at
   least SLOW_S and at least FAR_ABOVE times the timing's fastest sample: a call that slow spent its
   time waiting, not working (the fastest sample is the estimate of the work). With at least
   MIN_SAMPLES samples, the timing is flagged when
   (a) its median is at least STALL_S and at least FAR_ABOVE times its fastest sample (most calls
       wait), or
   (b) at least SLOW_SHARE of its samples are slow and at least GRID_SHARE of those sit within
       GRID_TOLERANCE of a tick of a whole multiple of one scheduler tick of TICKS_S (HZ = 1000, 250
       or 100; CFS slices are whole ticks): the waits are the scheduler's slices.
4. **A smaller case slower than a larger one** (timings of one kernel on several cases). When every
   call of a timing waited, its fastest sample too, rule 3 sees a slow kernel: on the 2-core machine
   with one core busy a numba kernel took a flat 12 ms a call on 1 and 64 rows (noise 0.1%) and
   41 us on 4096. A timing is flagged when its median is at least STALL_S and at least FAR_ABOVE
   times the median of the same kernel on a case at least as large (as many bytes and FLOPs or
   more): more work cannot take a twentieth of the time.
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import env, threads

LOAD_TOLERANCE = 0.5  # threads of other work, on average over the last minute, beyond the free cores
LOAD_WINDOW_S = 60.0  # time constant of the 1-minute load average
TICKS_S = (10e-3, 4e-3, 1e-3)  # scheduler ticks at HZ = 100, 250, 1000; the largest that fits is named
SLOW_S = 2e-3
FAR_ABOVE = 20
STALL_S = 4e-3
MIN_SAMPLES = 5
SLOW_SHARE = 0.25
GRID_SHARE = 0.75
GRID_TOLERANCE = 0.1  # of the tick


@dataclass(frozen=True)
class Timed:
    """One case's timing: its samples in seconds and, for rule 4, its kernel (timings of one kernel on
    different cases share it; empty: compared with none) and the case's bytes and FLOPs."""
    name: str
    samples: Sequence[float]
    kernel: str = ""
    bytes: float = 0.0
    flops: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def check_contention(threads_used: int, timings: Sequence[Timed] = ()) -> list[str]:
    """Reasons to distrust the timings of a run on `threads_used` threads (empty when none is found):
    the load and oversubscription rules, then one reason at most per timing from rules 3 and 4."""
    reasons = []
    advice = "use --threads 1 or a quiet machine" if threads_used > 1 else "use a quiet machine"
    which = "timings of parallel kernels" if threads_used > 1 else "timings"
    load = env.load_average()
    cores = os.cpu_count() or 1
    if load is not None:
        own = own_load_share(threads_used)
        others_now = others_running()
        if load - own > max(cores - threads_used, 0) + LOAD_TOLERANCE and (others_now is None or others_now > 0):
            reasons.append(f"load {load:.1f} ({own:.1f} of it this process) on {cores} cores while this run uses "
                           f"{_threads(threads_used)}; {which} are unreliable ({advice})")
    available = threads.available_cores()
    if threads_used > available:
        reasons.append(f"this run uses {threads_used} threads on the {available} cores available to it: its "
                       f"threads wait for each other; timings are unreliable (use --threads {available})")
    for timed in timings:
        found = slice_reason(timed.samples) or larger_case_reason(timed, timings)
        if found:
            reasons.append(f"{timed.name}: {found}; its timing measures the scheduler ({advice})")
    return reasons


def own_load_share(threads_used: int) -> float:
    """This process's estimated part of the 1-minute load average (see the module's rule 1)."""
    age = process_age_s()
    if not age:
        return float(threads_used)
    busy = time.process_time() / age
    return busy * (1 - math.exp(-age / LOAD_WINDOW_S))


def others_running() -> int | None:
    """Threads of other processes runnable now: /proc/loadavg's runnable count less this process's
    threads in state R (the reading thread among them); None where /proc cannot tell."""
    try:
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                own += (task / "stat").read_text().rpartition(")")[2].split()[0] == "R"
            except OSError:
                continue  # a thread that ended meanwhile
        return max(runnable - own, 0)
    except (OSError, ValueError, IndexError):
        return None


def process_age_s() -> float | None:
    """Seconds since this process started, from /proc; None where it cannot be read."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # the fields after the command name, which is in parentheses and may hold spaces; starttime is field 22
        start_ticks = int(stat.rpartition(")")[2].split()[19])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def slice_reason(samples: Sequence[float]) -> str | None:
    """Why these samples (seconds) show scheduler waits (the module's rule 3), or None."""
    if len(samples) < MIN_SAMPLES:
        return None
    fastest, median = min(samples), statistics.median(samples)
    if median >= STALL_S and median >= FAR_ABOVE * fastest:
        return f"median {_time(median)} is {median / fastest:.0f}x its fastest call ({_time(fastest)})"
    slow = [s for s in samples if s >= SLOW_S and s >= FAR_ABOVE * fastest]
    if len(slow) < SLOW_SHARE * len(samples):
        return None
    for tick in TICKS_S:
        on_grid = sum(1 for s in slow if abs(s / tick - round(s / tick)) <= GRID_TOLERANCE)
        if on_grid >= GRID_SHARE * len(slow):
            return (f"{on_grid} of {len(samples)} calls took whole multiples of {_time(tick)} "
                    f"(the scheduler's tick), the fastest {_time(fastest)}")
    return None


def larger_case_reason(timed: Timed, timings: Sequence[Timed]) -> str | None:
    """Why this timing is slower than its kernel's on a larger case (the module's rule 4), or None."""
    if not timed.kernel or len(timed.samples) < MIN_SAMPLES or timed.median < STALL_S:
        return None
    larger = [t for t in timings if t is not timed and t.kernel == timed.kernel and len(t.samples) >= MIN_SAMPLES
              and t.bytes >= timed.bytes and t.flops >= timed.flops]
    if not larger:
        return None
    fastest = min(larger, key=lambda t: t.median)
    if timed.median < FAR_ABOVE * fastest.median:
        return None
    return (f"median {_time(timed.median)} is {timed.median / fastest.median:.0f}x the same kernel's on a larger "
            f"case ({fastest.name}: {_time(fastest.median)})")


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def warn(reasons: Sequence[str]) -> None:
    for reason in reasons:
        print(f"warning: contention: {reason}", file=sys.stderr)


def flag(records: list[dict], timings: Sequence[Timed] = ()) -> list[str]:
    """Check this process's run (threads.in_use()), warn on stderr, and mark each record's
    `contention` field with the reasons (an empty list when clean); returns them."""
    reasons = check_contention(threads.in_use(), timings)
    warn(reasons)
    for record in records:
        record["contention"] = list(reasons)
    return reasons
