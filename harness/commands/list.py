"""`quantbench list`: ops, formats, backends and variants, with availability on this machine."""
from __future__ import annotations

from quantbench.harness.registry import OPS, load_all, variants
from quantbench.kernels import formats

from .common import add_output_option, emit


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list ops, formats and kernel variants with their availability here")
    add_output_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    load_all()
    fmt_rows = []
    for name in formats.names():
        fmt = formats.get(name)
        fmt_rows.append({"format": name, "family": fmt.family, "bits_per_value": fmt.bits_per_value,
                         "block": fmt.block, "options": ", ".join(f"{k}={v}" for k, v in formats.options_of(name).items())})
    emit(fmt_rows, ["format", "family", "bits_per_value", "block", "options"], args, "Formats")

    var_rows = []
    for v in variants():
        reason = v.availability()
        var_rows.append({"op": v.op, "backend": v.backend, "variant": v.name,
                         "formats": ",".join(v.formats) if v.formats else "all",
                         "available": "yes" if reason is None else f"unavailable: {reason}"})
    emit(var_rows, ["op", "backend", "variant", "formats", "available"], args, "Kernel variants")

    op_rows = [{"op": o.name, "baseline": "/".join(o.baseline), "description": o.description} for o in OPS.values()]
    emit(op_rows, ["op", "baseline", "description"], args, "Ops")
    return 0

