"""The one list of kernel benchmark points the suites run (asv in suites/asv/, pytest-benchmark in
suites/): every registered variant of every op, on each format the op applies to (`bench.select`),
on the op's own cases (`Op.default_cases`) or on small versions of them.

$QUANTBENCH_SUITE_SHAPES picks the shapes: "default" (the op's real model shapes) or "small"
(the op's first case, the embedded model's, with its leading dimensions halved until it holds at
most SMALL_VALUES values; the last dimension, the row length that block and group sizes divide,
is kept), so a quick run on a 2-core CPU takes minutes, not hours.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from quantbench.kernels import formats as formats_registry
from quantbench.kernels.registry import OPS, Case, Unavailable, Variant, get_op, load_all

from .bench import select

SHAPES_ENV = "QUANTBENCH_SUITE_SHAPES"
SHAPE_MODES = ("default", "small")
SMALL_VALUES = 1 << 16


@dataclass(frozen=True)
class SuiteCase:
    variant: Variant
    spec: str
    case: Case

    @property
    def id(self) -> str:
        return f"{self.case.op}-{self.spec}-{self.variant.backend}-{self.variant.name}-{self.case.shape_id}"

    def prepare(self, validate: bool = True):
        """(callable to time, case on its run device); the output checked once against the reference.

        Raises Unavailable when the variant cannot run here, AssertionError when it is wrong."""
        reason = self.variant.availability()
        if reason:
            raise Unavailable(reason)
        case = self.case.with_device(self.variant.run_device())
        fn = self.variant.build(case)
        op = get_op(case.op)
        if validate and op.check:
            op.check(case, fn(), op.reference(case))
        return fn, case

    @property
    def bytes(self) -> int:
        return get_op(self.case.op).bytes(self.case)

    @property
    def bits_per_value(self) -> float:
        return self.case.format_obj.bits_per_value_for(self.case.dims[-1][1])


def synchronized(fn, device: str):
    """`fn` followed by a device synchronize, so a wall clock around it times the GPU work."""
    if not device.startswith("cuda"):
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def shape_mode() -> str:
    mode = os.environ.get(SHAPES_ENV, "default").strip().lower() or "default"
    if mode not in SHAPE_MODES:
        raise ValueError(f"${SHAPES_ENV}={mode!r}: expected one of {', '.join(SHAPE_MODES)}")
    return mode


def shrink(case: Case, max_values: int = SMALL_VALUES) -> Case:
    """The case with its largest even leading dimension halved until it holds <= max_values values."""
    dims = dict(case.dims)
    names = list(dims)[:-1]
    while math.prod(dims.values()) > max_values:
        even = [n for n in names if dims[n] % 2 == 0]
        if not even:
            break
        largest = max(even, key=lambda n: dims[n])
        dims[largest] //= 2
    return Case.make(case.op, case.format, dtype=case.dtype, device=case.device, seed=case.seed, **dims)


def cases_for(op: str, spec: str, mode: str | None = None) -> list[Case]:
    cases = get_op(op).default_cases(spec)
    if (mode or shape_mode()) == "small":
        return [shrink(c) for c in cases[:1]]
    return cases


def suite_ops() -> list[str]:
    load_all()
    return list(OPS)


def suite_cases(ops: list[str] | None = None, mode: str | None = None) -> list[SuiteCase]:
    """Every (variant, format spec, case) of the given ops (default: all), available here or not."""
    out = []
    for op in ops or suite_ops():
        op_obj = get_op(op)
        specs = op_obj.formats() if op_obj.formats else formats_registry.names()
        for v, spec in select(op, specs, None):
            out.extend(SuiteCase(v, spec, c) for c in cases_for(op, spec, mode))
    return out
