"""What the numba kernels' explicit-SIMD code asks of the CPU it compiles for: the target's
features (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES count, not the host's own) and calls of LLVM
intrinsics by name, for the paths that exist only on some CPUs."""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils


def target_features(context) -> set[str]:
    """The features LLVM compiles numba's code with, as names without the "+" ("avx2", "gfni", ...)."""
    return {f[1:] for f in getattr(context.codegen(), "_tm_features", "").split(",") if f.startswith("+")}


def call_intrinsic(builder, name, result, *args):
    """A call of the LLVM intrinsic `name` (x86 ones where target_features has them)."""
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, [a.type for a in args]), name)
    return builder.call(fn, list(args))
