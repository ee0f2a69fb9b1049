"""Formats (`quantbench.kernels.formats`) and kernel variants, one module per op family and backend.

`MODULES` lists the variant modules; the registry imports them on first use, so adding a kernel
file means adding its name here. Modules import optional backends (triton, numba-cuda) lazily,
inside their factories, so registering never fails on a machine without them.
"""

MODULES = [
    "reference_torch",
]
