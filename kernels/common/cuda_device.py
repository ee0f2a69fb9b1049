"""Shared by the numba-cuda variants: a tensor as numba sees it, and the per-block memory limits.

numba-cuda is imported only for a CUDA tensor, so these modules register on machines without it;
under NUMBA_ENABLE_CUDASIM=1 the simulator takes the CPU tensor's numpy view.
"""
from __future__ import annotations

import torch

SHARED_BYTES = 48 * 1024  # static shared memory a block may use
CONST_BYTES = 32 * 1024  # of the 64 KiB constant bank, leave room for kernel arguments


def device_view(t: torch.Tensor):
    if t.is_cuda:
        from numba import cuda
        return cuda.as_cuda_array(t)
    return t.numpy()
