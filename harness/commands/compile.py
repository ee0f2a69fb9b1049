"""`quantbench compile`: every Triton and numba-cuda kernel of the suite compiled for real GPU targets,
no GPU needed; registers, spills, shared memory and SASS mix per kernel; exit 1 on a compile error
or a spill."""
from __future__ import annotations

import importlib.util
import os
import sys

from quantbench.harness.errors import UserError

from .common import add_output_option, add_store_options, emit, split_list, store


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile every GPU kernel for real targets (no GPU needed): registers, "
                                       "spills, shared memory, SASS instruction mix; exit 1 on an error or a spill")
    p.add_argument("--target", default="sm_80,sm_89,sm_90",
                   help="comma-separated targets (default sm_80,sm_89,sm_90)")
    p.add_argument("--op", default="all", help="comma-separated ops, or all (default)")
    p.add_argument("--backend", default="all", help="comma-separated backends (triton, cuda), or all (default)")
    p.add_argument("--jobs", type=int, default=None,
                   help="kernels compiled at once, on threads (default: one per CPU)")
    add_output_option(p)
    add_store_options(p, threads=False)
    p.set_defaults(func=run)


def parse_targets(text: str) -> list[int]:
    archs = []
    for part in split_list(text) or []:
        digits = part.lower().removeprefix("sm_")
        if not digits.isdigit() or int(digits) < 70:
            raise UserError(f"--target {part!r}: expected sm_XY with XY at least 70, e.g. sm_90")
        archs.append(int(digits))
    if not archs:
        raise UserError("--target: no target given")
    return archs


def run(args) -> int:
    archs = parse_targets(args.target)
    if importlib.util.find_spec("triton") is None:
        raise UserError("unavailable: triton not installed (it brings the compiler, ptxas and cuobjdump)")
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise UserError("TRITON_INTERPRET=1 makes Triton build interpreter functions, which cannot be compiled; "
                        "unset it")
    from quantbench.harness.compile_check.sweep import COLUMNS, compile_cases, gpu_suite_cases, to_records

    try:
        cases = gpu_suite_cases(split_list(args.op), split_list(args.backend))
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    if not cases:
        raise UserError(f"no GPU variant matches --op {args.op} --backend {args.backend}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: expected at least 1")
    rows = compile_cases(cases, archs, jobs=args.jobs)
    emit([r.row() for r in rows], COLUMNS, args, f"GPU kernels compiled for {args.target} (ptxas -v, cuobjdump -sass)")
    store(to_records(rows), args)
    failed = [r for r in rows if r.failed]
    if failed:
        print(f"compile: {len(failed)} kernel(s) failed to compile or spill registers", file=sys.stderr)
        return 1
    return 0
