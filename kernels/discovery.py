"""Finding the ops, variants and formats: by walking the packages, then the installed plugins.

Every module in an op-family package (`quantbench.kernels.<family>`) is imported, so its
`register_op` and `@variant` calls run; a new variant is a new file, not an edit to a list.
Modules named `*_jit` are skipped: they hold device code (Triton, numba-cuda) and import their
backend at module level, so their variants' factories import them when a case is built.
Then the installed plugins are loaded (kernels/plugins.py).
"""
from __future__ import annotations

import importlib
import pkgutil

from quantbench.kernels.plugins import load_plugins

NOT_FAMILIES = ("formats", "common")  # packages under kernels/ that hold no op or variant
DEVICE_CODE_SUFFIX = "_jit"

_kernels_loaded = False


def family_packages() -> list[str]:
    import quantbench.kernels as root

    return [f"{root.__name__}.{info.name}" for info in pkgutil.iter_modules(root.__path__)
            if info.ispkg and info.name not in NOT_FAMILIES]


def modules_of(package: str) -> list[str]:
    """Every importable module of the package and its subpackages, device code excluded."""
    pkg = importlib.import_module(package)
    return [info.name for info in pkgutil.walk_packages(pkg.__path__, f"{package}.")
            if not info.name.rsplit(".", 1)[-1].endswith(DEVICE_CODE_SUFFIX)]


def import_kernel_modules() -> None:
    global _kernels_loaded
    if not _kernels_loaded:
        _kernels_loaded = True
        for package in family_packages():
            for module in modules_of(package):
                importlib.import_module(module)
    load_plugins()
