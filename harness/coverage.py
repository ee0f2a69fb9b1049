"""The coverage matrix: for every op, every format the op's spec says it serves, and every
backend, whether a variant runs here, exists but cannot run here (and why), or does not exist.

The op's spec decides the formats (`Op.formats`, every registered format when it has none); the
variants decide what they serve (`Variant.supports`). A format an op serves with no variant at all
is a gap `uncovered()` names, and a test fails on it, so a new format cannot be left out silently.
"""
from __future__ import annotations

from dataclasses import dataclass

from quantbench.kernels import formats as formats_registry
from quantbench.kernels.registry import OPS, load_all, variants

AVAILABLE, UNAVAILABLE, NOT_IMPLEMENTED = "available", "unavailable", "not implemented"


@dataclass(frozen=True)
class Cell:
    op: str
    format: str
    backend: str
    status: str
    variants: tuple[str, ...] = ()
    reason: str = ""

    def text(self) -> str:
        if self.status == AVAILABLE:
            return "yes: " + ",".join(self.variants)
        if self.status == UNAVAILABLE:
            return f"unavailable: {self.reason}"
        return "-"


def op_formats(op_name: str) -> list[str]:
    op = OPS[op_name]
    return op.formats() if op.formats else formats_registry.names()


def backends() -> list[str]:
    load_all()
    return sorted({v.backend for v in variants()})


def cells() -> list[Cell]:
    load_all()
    out = []
    for op in OPS:
        for spec in op_formats(op):
            serving = variants(op=op, format=spec)
            for backend in backends():
                mine = [v for v in serving if v.backend == backend]
                runnable = [v.name for v in mine if v.availability() is None]
                if runnable:
                    out.append(Cell(op, spec, backend, AVAILABLE, tuple(runnable)))
                elif mine:
                    reason = "; ".join(sorted({_short(v.availability()) for v in mine}))
                    out.append(Cell(op, spec, backend, UNAVAILABLE, tuple(v.name for v in mine), reason))
                else:
                    out.append(Cell(op, spec, backend, NOT_IMPLEMENTED))
    return out


def matrix_rows() -> tuple[list[dict], list[str]]:
    """One row per (op, format), one column per backend."""
    rows: dict[tuple[str, str], dict] = {}
    for cell in cells():
        rows.setdefault((cell.op, cell.format), {"op": cell.op, "format": cell.format})[cell.backend] = cell.text()
    return list(rows.values()), ["op", "format", *backends()]


def uncovered() -> list[tuple[str, str]]:
    """(op, format) pairs the op serves that no variant implements, on any backend."""
    load_all()
    return [(op, spec) for op in OPS for spec in op_formats(op) if not variants(op=op, format=spec)]


def _short(reason: str) -> str:
    return reason.split(" (")[0]
