"""Every GPU variant of the suite compiled for each target: one row per (variant, format, kernel,
specialization, target), its ptxas figures and SASS mix, and the records `compare` gates on.

A specialization is what makes a kernel different: for Triton the constexpr values (the record's
case is `sm_90:D=128,BLOCK_N=8,...`), for numba-cuda the argument types and the constants closed
over by its kernel factory, named by the first suite case that builds it (`sm_90:<case>`). The
suite's default shapes are used, not the small ones: shrinking a case can change its constants.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from quantbench.harness.results import make_record
from quantbench.harness.suite_cases import SuiteCase, suite_cases
from quantbench.kernels.registry import Unavailable

from . import numba_kernels, triton_kernels
from .capture import Launch, capture_launches
from .toolchain import Resources, ToolError

DEFAULT_TARGETS = (80, 89, 90)
TOOLCHAINS = {"triton": "triton", "numba-cuda": "numba-cuda"}  # a variant's need -> the compiler used

COLUMNS = ["op", "format", "backend", "variant", "kernel", "target", "constants", "registers", "spill_bytes",
           "stack_bytes", "shared_bytes", "global_loads", "global_stores", "fma", "integer_ops", "shuffles",
           "local_accesses", "instructions", "status"]
METRICS = {"registers": "registers", "spill_bytes": "B", "stack_bytes": "B", "shared_bytes": "B"}


@dataclass
class CompileRow:
    suite_case: SuiteCase
    kernel: str
    arch: int
    constants: str
    status: str = "ok"  # ok, spills, failed: <why>, unavailable: <why>, skipped: <why>
    resources: Resources | None = None
    shared_bytes: int = 0  # static + the dynamic shared memory a launch requests
    cases: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"sm_{self.arch}"

    @property
    def failed(self) -> bool:
        return self.status == "spills" or self.status.startswith("failed")

    def row(self) -> dict:
        v, res = self.suite_case.variant, self.resources
        out = {"op": self.suite_case.case.op, "format": self.suite_case.spec, "backend": v.backend,
               "variant": v.name, "kernel": self.kernel, "target": self.target, "constants": self.constants,
               "status": self.status}
        if res is not None:
            out.update(registers=res.registers, spill_bytes=res.spill_bytes, stack_bytes=res.stack_bytes,
                       shared_bytes=self.shared_bytes, **res.sass_mix)
        return out


def gpu_toolchain(suite_case: SuiteCase) -> str | None:
    return next((TOOLCHAINS[n] for n in suite_case.variant.needs if n in TOOLCHAINS), None)


def compile_cases(cases: list[SuiteCase], archs=DEFAULT_TARGETS, progress: bool = True,
                  jobs: int | None = None) -> list[CompileRow]:
    """Capture each GPU variant's launches at each case and compile each distinct kernel for each arch.

    The captures run here, one case after another; the distinct kernels then compile on `jobs`
    threads (default: one per CPU): Triton's MLIR passes and ptxas release the GIL, so 2 threads
    took 7.6 s where one took 14.6 s for 12 kernels on a 2-core machine. numba-cuda's compiles run
    one at a time in the calling thread."""
    rows: dict[tuple, CompileRow] = {}
    first_case: dict[tuple, str] = {}  # numba-cuda kernel -> the first suite case that built it
    numba_reason = numba_kernels.nvvm_unavailable()
    gpu_cases = [c for c in cases if gpu_toolchain(c)]
    planned: list[tuple[SuiteCase, tuple, str]] = []  # (case, kernel key, constants) in suite order
    pending: dict[tuple, tuple[Launch, int]] = {}  # kernel key -> what compiles it
    for suite_case in gpu_cases:
        toolchain = gpu_toolchain(suite_case)
        if toolchain == "numba-cuda" and numba_reason:
            _add(rows, suite_case, "-", 0, "-", f"unavailable: {numba_reason}")
            continue
        try:
            launches = capture_launches(suite_case.variant, suite_case.case)
        except Unavailable as exc:
            _add(rows, suite_case, "-", 0, "-", f"skipped: {exc}")
            continue
        except Exception as exc:  # the variant's own launcher broke: report it as this case's failure
            _add(rows, suite_case, "-", 0, "-", f"failed: capture: {type(exc).__name__}: {exc}")
            continue
        for launch in launches:
            for arch in archs:
                key, constants = _kernel_key(launch, arch, suite_case, first_case)
                pending.setdefault(key, (launch, arch))
                planned.append((suite_case, key, constants))
    compiled = _compile_all(pending, progress, jobs or os.cpu_count() or 1)
    for suite_case, key, constants in planned:
        name, resources, shared, status = compiled[key]
        row = _add(rows, suite_case, name, pending[key][1], constants, status)
        row.resources, row.shared_bytes = resources, shared
    return list(rows.values())


def _compile_all(pending: dict[tuple, tuple[Launch, int]], progress: bool, jobs: int) -> dict[tuple, tuple]:
    """Triton kernels on the pool's threads; numba-cuda ones here, in the calling thread, meanwhile
    (in a thread of its own, numba-cuda's compile initializes the CUDA driver and fails)."""
    done: dict[tuple, tuple] = {}

    def finished(key):
        if progress:
            name, _, _, status = done[key]
            print(f"[{len(done)}/{len(pending)}] compiled {name} for sm_{pending[key][1]}: {status}",
                  file=sys.stderr, flush=True)

    # Triton prints a whole reproducer when ptxas fails; stdout is one object for every thread, so
    # it is silenced once around the pool rather than per compile
    with contextlib.redirect_stdout(io.StringIO()), ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(_compile, launch, arch): key for key, (launch, arch) in pending.items()
                   if launch.toolchain == "triton"}
        for key, (launch, arch) in pending.items():
            if launch.toolchain != "triton":
                done[key] = _compile(launch, arch)
                finished(key)
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            finished(futures[future])
    return done


def _add(rows, suite_case: SuiteCase, kernel: str, arch: int, constants: str, status: str) -> CompileRow:
    v = suite_case.variant
    key = (v.key, suite_case.spec, kernel, arch, constants, status if kernel == "-" else "")
    if key not in rows:
        rows[key] = CompileRow(suite_case, kernel, arch, constants, status)
    rows[key].cases.append(suite_case.case.shape_id)
    return rows[key]


def _kernel_key(launch: Launch, arch: int, suite_case: SuiteCase, first_case: dict) -> tuple[tuple, str]:
    """(what makes the compiled kernel distinct, the text naming it in rows and records)"""
    if launch.toolchain == "triton":
        _, signature, constexprs, _, options = triton_kernels.specialization(launch, arch)
        constants = triton_kernels.constant_names(launch, constexprs)
        text = ",".join(f"{k}={v}" for k, v in constants.items())
        return (id(launch.kernel), arch, tuple(signature.items()), text, repr(options)), text
    types = tuple(str(launch.kernel.typeof_pyval(a)) for a in launch.args)
    key = (id(launch.kernel), arch, types)
    return key, first_case.setdefault(key, suite_case.case.shape_id)


def _compile(launch: Launch, arch: int) -> tuple[str, Resources | None, int, str]:
    """(kernel name, resources, shared bytes, status) of one launch compiled for one arch."""
    try:
        if launch.toolchain == "triton":
            done = triton_kernels.compile_launch(launch, arch)
            shared = done.launch_shared_bytes + done.resources.static_shared_bytes
        else:
            done = numba_kernels.compile_launch(launch, arch)
            shared = done.resources.static_shared_bytes
    except ToolError as exc:
        return launch.name, None, 0, f"failed: {exc}"
    status = "spills" if done.resources.spill_bytes else "ok"
    return done.name, done.resources, shared, status


def to_records(rows: list[CompileRow]) -> list[dict]:
    """Per compiled kernel: registers, spills, stack, shared memory and each SASS class (lower is better)."""
    records = []
    for r in rows:
        if r.resources is None:
            continue
        v = r.suite_case.variant
        common = dict(op="compile", format=r.suite_case.spec, backend=v.backend,
                      variant=f"{r.suite_case.case.op}/{v.name}/{r.kernel}", case=f"{r.target}:{r.constants}")
        values = {"registers": r.resources.registers, "spill_bytes": r.resources.spill_bytes,
                  "stack_bytes": r.resources.stack_bytes, "shared_bytes": r.shared_bytes}
        for metric, value in values.items():
            records.append(make_record(metric=metric, value=value, unit=METRICS[metric], direction="lower", **common))
        for name, count in r.resources.sass_mix.items():
            records.append(make_record(metric=f"sass_{name}", value=count, unit="instructions", direction="lower",
                                       **common))
    return records


def gpu_suite_cases(ops: list[str] | None = None, backends: list[str] | None = None) -> list[SuiteCase]:
    """The suite's cases of every GPU variant (default shapes), optionally of some ops / backends."""
    return [c for c in suite_cases(ops, mode="default")
            if gpu_toolchain(c) and (not backends or c.variant.backend in backends)]
