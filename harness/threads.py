"""CPU threads: how many the kernels run on (torch's intra-op pool, numba's parallel pool), the cores
this process may use, and `--threads`, which sets both pools before a command runs."""
from __future__ import annotations

import os

import numba
import torch

from .errors import UserError


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def counts() -> dict[str, int]:
    """The thread counts now: torch's, numba's and the available cores (records' env["threads"])."""
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(), "cores": available_cores()}


def in_use() -> int:
    """The threads a kernel of this run may keep busy: torch and numba kernels do not run at once."""
    return max(torch.get_num_threads(), numba.get_num_threads())


def describe() -> str:
    """The counts for a table's header line."""
    c = counts()
    return f"torch {c['torch']} / numba {c['numba']} threads on {c['cores']} cores"


def set_threads(n: int) -> None:
    """Run torch and numba kernels on `n` threads. numba starts its pool of NUMBA_NUM_THREADS threads
    (default: the CPU count) when it is imported and can only mask threads off it, never add any."""
    if n < 1:
        raise UserError(f"--threads {n}: expected at least 1")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        raise UserError(f"--threads {n}: numba runs at most {limit} threads in this process "
                        f"(NUMBA_NUM_THREADS, fixed when numba is imported; its default is the CPU count); "
                        f"set NUMBA_NUM_THREADS={n} in the environment to allow more")
    numba.set_num_threads(n)
    torch.set_num_threads(n)
