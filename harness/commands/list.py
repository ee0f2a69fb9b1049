"""`quantbench list`: ops, formats, backends and variants, with availability on this machine."""
from __future__ import annotations

import sys

from quantbench.harness import coverage
from quantbench.kernels import formats
from quantbench.kernels.registry import OPS, load_all, variants

from .common import add_output_option, emit


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list ops, formats and kernel variants with their availability here")
    p.add_argument("--matrix", action="store_true",
                   help="op x format x backend: the variants available here, unavailable here (and why), "
                        "or not implemented (-)")
    add_output_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    load_all()
    if args.matrix:
        rows, columns = coverage.matrix_rows()
        emit(rows, columns, args, "Coverage: op x format x backend (yes: variants that run here; -: not implemented)")
        gaps = coverage.uncovered()
        if gaps:
            print("formats an op serves with no variant: " + ", ".join(f"{op}[{spec}]" for op, spec in gaps),
                  file=sys.stderr)
        return 1 if gaps else 0
    fmt_rows = []
    for name in formats.names():
        fmt = formats.get(name)
        fmt_rows.append({"format": name, "family": fmt.family, "bits_per_value": fmt.bits_per_value,
                         "block": fmt.block,
                         "options": ", ".join(f"{k}={v}" for k, v in formats.options_of(name).items())})
    emit(fmt_rows, ["format", "family", "bits_per_value", "block", "options"], args, "Formats")

    var_rows = []
    for v in variants():
        reason = v.availability()
        var_rows.append({"op": v.op, "backend": v.backend, "variant": v.name,
                         "formats": "all" if v.formats is None else ",".join(v.format_names()),
                         "available": "yes" if reason is None else f"unavailable: {reason}"})
    emit(var_rows, ["op", "backend", "variant", "formats", "available"], args, "Kernel variants")

    op_rows = [{"op": o.name, "baseline": "/".join(o.baseline), "description": o.description} for o in OPS.values()]
    emit(op_rows, ["op", "baseline", "description"], args, "Ops")
    return 0

