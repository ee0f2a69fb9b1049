"""The GPU kernel launches a variant makes, captured instead of run.

The variant's factory is called on the case's CPU tensors, as in the Triton interpreter, and its
callable is called once with the launch entry points of Triton (`JITFunction.run`) and numba-cuda
(`CUDADispatcher.call`) replaced by recorders: each launch leaves the kernel and the exact
arguments it was given (compile-time constants, options, argument types), and no kernel runs. So
the constants compiled are the ones the variant's own launcher computes for that case, and a new
variant is covered without any list to edit. Outputs are left unwritten; the callable's torch
code after the launch runs on them as they are.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

from quantbench.kernels.registry import Case, Variant


@dataclass(frozen=True, eq=False)
class Launch:
    toolchain: str  # "triton" or "numba-cuda"
    kernel: Any  # triton JITFunction, numba CUDADispatcher
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        if self.toolchain == "triton":
            return self.kernel.fn.__name__
        return self.kernel.py_func.__name__


@contextlib.contextmanager
def _recording(launches: list[Launch]):
    from triton.runtime.jit import JITFunction

    def triton_run(kernel, *args, grid, warmup, **kwargs):
        launches.append(Launch("triton", kernel, args, kwargs))

    patches = [(JITFunction, "run", triton_run)]
    try:
        from numba.cuda.dispatcher import CUDADispatcher
    except ImportError:  # no numba-cuda: its variants' factories fail and say so
        CUDADispatcher = None
    if CUDADispatcher is not None:
        def numba_call(kernel, args, griddim, blockdim, stream, sharedmem):
            launches.append(Launch("numba-cuda", kernel, tuple(args), {"griddim": griddim, "blockdim": blockdim}))
        patches.append((CUDADispatcher, "call", numba_call))
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's low-occupancy warnings on small capture grids
            yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def capture_launches(variant: Variant, case: Case) -> list[Launch]:
    """The kernel launches one call of the variant makes at this case (built on the CPU).
    Raises Unavailable when the variant's factory refuses the case."""
    launches: list[Launch] = []
    with _recording(launches):
        run = variant.factory(case.with_device("cpu"))
        run()
    return launches
