"""Helpers shared by the kernels of one backend across op families; no op or variant here.

    numba_f16.py     IEEE half bits <-> float32 inside numba kernels
    numba_exp.py     a float32 exp LLVM vectorizes, for the softmax of the numba attention kernels
    numba_vectors.py explicit-SIMD decoders of packed codes (int8, nibbles, bit planes) as numba intrinsics
    numba_int_dots.py explicit-SIMD int8 dot products of q4 / q8_0 weight blocks (VNNI where the CPU has it)
    numba_row_math.py explicit-SIMD dot products and weighted sums of tiles of float32 rows (attention, GEMM)
    numba_target.py  the CPU features numba compiles for, and calls of LLVM intrinsics by name
    cuda_device.py   a tensor as numba-cuda sees it; per-block memory limits
"""
