"""Helpers shared by the kernels of one backend across op families; no op or variant here.

    numba_f16.py     IEEE half bits <-> float32 inside numba kernels
    cuda_device.py   a tensor as numba-cuda sees it; per-block memory limits
"""
