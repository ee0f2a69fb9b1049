"""Stable import point for the kernel registry, which lives in kernels/registry.py so that kernel
modules can register without importing the harness: `from quantbench.harness.registry import
variant` keeps working for plugins and scripts written against it."""

from quantbench.kernels.registry import (
                                         NEEDS,
                                         OPS,
                                         VARIANTS,
                                         Case,
                                         Op,
                                         Unavailable,
                                         Variant,
                                         find_variant,
                                         get_op,
                                         interpreting_triton,
                                         load_all,
                                         register_op,
                                         simulating_cuda,
                                         variant,
                                         variants,
)

__all__ = ["NEEDS", "OPS", "VARIANTS", "Case", "Op", "Unavailable", "Variant", "find_variant", "get_op",
           "interpreting_triton", "load_all", "register_op", "simulating_cuda", "variant", "variants"]
