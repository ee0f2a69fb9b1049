"""A captured numba-cuda launch compiled to PTX by NVVM (`numba.cuda.compile_ptx`, no GPU needed),
at the argument types the launch passed, then assembled by Triton's newest ptxas for `ptxas -v`
(on a GPU the driver assembles numba's PTX itself; its ptxas is as new as the driver)."""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace

from .capture import Launch
from .toolchain import Resources, ToolError, assemble, summary, tool_path

PTXAS = "ptxas-blackwell"  # Triton's name for its newest ptxas: it reads the PTX versions NVVM writes


def nvvm_unavailable() -> str | None:
    """Why numba-cuda kernels cannot be compiled here (None: they can)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); it compiles nothing"
    try:
        from numba.cuda.cudadrv import nvvm
    except ImportError:
        return "numba-cuda not installed"
    if not nvvm.is_available():
        return "NVVM (libnvvm from the CUDA toolkit) not found"
    return None


@dataclass(frozen=True)
class CompiledNumba:
    name: str
    signature: str  # the argument types, which fix the kernel numba compiles
    resources: Resources


@contextlib.contextmanager
def _device_functions_for(cc: tuple[int, int]):
    """numba compiles the device functions a kernel calls for the current device's compute capability,
    which needs a driver; here they are compiled for the target's."""
    from numba.cuda import dispatcher

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def compile_launch(launch: Launch, arch: int) -> CompiledNumba:
    from numba import cuda

    dispatcher = launch.kernel
    types = tuple(dispatcher.typeof_pyval(a) for a in launch.args)
    cc = (arch // 10, arch % 10)
    try:
        with _device_functions_for(cc):
            ptx, _ = cuda.compile_ptx(dispatcher.py_func, types, cc=cc,
                                      fastmath=dispatcher.targetoptions.get("fastmath", False))
    except Exception as exc:  # a typing or lowering error is this kernel's result
        raise ToolError(summary(exc)) from None
    entry = re.search(r"\.entry\s+(\S+?)\s*\(", ptx)
    if entry is None:
        raise ToolError(f"{launch.name}: NVVM's PTX has no .entry")
    resources = assemble(ptx, entry.group(1), f"sm_{arch}", tool_path(PTXAS))
    return CompiledNumba(launch.name, ", ".join(str(t) for t in types), resources)
