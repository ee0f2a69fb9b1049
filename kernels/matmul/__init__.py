"""Quantized-weight matmul: ops `gemv` (decode) and `gemm` (prefill), spec.py.

    spec.py          the ops: inputs with outlier channels, float64 reference, bytes, FLOPs, check
    torch.py         dequant_matmul (decode the weight, then torch matmul)
    torch_int_mm.py  int_mm: torch._int_mm on int8 weights and per-token int8 activations (W8A8)
    numba.py         fused_fma and int8_dot variants (+ numba_fma.py, numba_int8.py: the loops)
    numba_token_int8.py  w8a8 (int8 weights) and w4a8 (q4_0 / q4_1 weights) on per-token int8
                     activations (+ numba_token_int8_loops.py)
    triton.py        fused_fma and int8_dot in Triton (+ triton_jit.py)
    cuda.py          int8 dot products in numba-cuda, in registers or via shared memory (+ cuda_jit.py)
"""
