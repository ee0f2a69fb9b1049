"""The numba kernels a run will time, compiled first in one worker process per core, untimed.

numba compiles a kernel at its first call, on one core with the GIL held, and caches it beside its
source (`__pycache__`). On a fresh checkout that compiling is most of `quantbench run`'s kernels
part (about 165 of its 230 s on the 2-core VM) while the other core idles. The workers compile
the same kernels side by side, each calling every variant it is given once on the smallest of the
run's cases; the timed pass then loads them from the cache. Nothing is timed while they run. A
variant that fails in a worker is left to the timed pass, which reports it; a warm cache makes
each worker's share a cache load.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from unittest import mock

from quantbench.harness.errors import UserError
from quantbench.harness.threads import available_cores
from quantbench.kernels.formats import FormatError

Job = tuple[str, str, str, tuple, str]  # numba variant name; the case's op, format, dims, dtype


def jobs(ops) -> list[list[Job]]:
    """Per (op, variant), a job for each format: the variant's name and the smallest of the run's
    cases for it. A group compiles the same kernel for several formats, so it goes to one worker."""
    from quantbench.harness.bench import select

    groups: dict[tuple[str, str], list[Job]] = {}
    for op in ops:
        for v, spec in select(op.name, op.run_specs(), ["numba"]):
            cases = [c for c in op.run_cases(spec) if _runnable(op, c)]
            if cases and not v.availability():
                case = min(cases, key=op.bytes)
                groups.setdefault((op.name, v.name), []).append((v.name, case.op, case.format, case.dims, case.dtype))
    return sorted(groups.values(), key=len, reverse=True)


def _runnable(op, case) -> bool:
    try:
        op.check_case(case)
    except (UserError, FormatError):
        return False
    return True


def compile_group(group: list[Job]) -> int:
    """Call each job's variant once on its case; the count that ran."""
    import torch

    from quantbench.kernels.registry import Case, load_all, variants

    torch.set_num_threads(1)
    load_all()
    ran = 0
    for name, op_name, spec, dims, dtype in group:
        case = Case(op_name, spec, dims, dtype)
        try:
            variant = variants(op=op_name, format=spec, backend="numba", name=name)[0]
            variant.build(case.with_device(variant.run_device()))()
            ran += 1
        except Exception:  # noqa: BLE001 -- the timed pass runs it again and reports what went wrong
            continue
    return ran


def warm(ops, workers: int | None = None) -> float:
    """Compile the ops' numba variants in `workers` processes (default: the cores, when more than
    one); the seconds it took."""
    workers = workers or available_cores()
    groups = jobs(ops)
    if workers < 2 or not groups:
        return 0.0
    started = time.perf_counter()
    print(f"kernels: compiling the numba variants in {workers} processes (cached for later runs)",
          file=sys.stderr, flush=True)
    spawn = multiprocessing.get_context("spawn")
    one_thread = {"NUMBA_NUM_THREADS": "1"}  # read by the workers as they import numba; code does not depend on it
    with mock.patch.dict(os.environ, one_thread), ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        ran = sum(pool.map(compile_group, groups))
    seconds = time.perf_counter() - started
    print(f"kernels: {ran} variant-format pairs compiled or loaded in {seconds:.0f} s", file=sys.stderr, flush=True)
    return seconds
