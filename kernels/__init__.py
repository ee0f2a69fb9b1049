"""Formats (`quantbench.kernels.formats`) and kernel variants, one module per op family and backend.

`MODULES` lists the variant modules; the registry imports them on first use, so adding a kernel
file means adding its name here. Modules import optional backends (triton, numba-cuda) lazily,
inside their factories, so registering never fails on a machine without them.
"""

MODULES = [
    "reference_torch",
    "blocks_numba",
    "blocks_triton",
    "fwht_numba",
    "turbo_numba",
    "fwht_triton",
    "turbo_triton",
    "tcq_reference",
    "tcq_numba",
    "tcq_triton",
    "tcq_cuda",
    "matmul_torch",
    "matmul_numba",
    "matmul_triton",
    "matmul_cuda",
    "attn_torch",
    "attn_triton",
    "attn_cuda",
    "attn_tcq",
    "attn_numba",
]
