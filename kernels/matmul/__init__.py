"""Quantized-weight matmul: ops `gemv` (decode) and `gemm` (prefill), spec.py.

    spec.py          the ops: inputs with outlier channels, float64 reference, bytes, FLOPs, check
    torch.py         dequant_matmul (decode the weight, then torch matmul)
    numba.py         fused_fma and int8_dot variants (+ numba_fma.py, numba_int8.py: the loops)
    triton.py        fused_fma and int8_dot in Triton (+ triton_jit.py)
    cuda.py          int8 dot products in numba-cuda, in registers or via shared memory (+ cuda_jit.py)
"""
