"""Attention over a quantized KV cache: ops `attn_decode` and `attn_prefill` (spec.py).

    spec.py          the ops: inputs, float64 reference, bytes, FLOPs, tolerance
    layout.py        which formats the native kernels read, and how (NativePlan)
    split.py         split-K partial results and their exact merge
    torch.py         dequant_sdpa (decode, then torch SDPA), native and sparse_v in torch
    numba.py         native and sparse_v on the packed codes (+ numba_rows.py: row decoders)
    tcq/numba.py     native attention on the TCQ formats' trellis streams
    triton.py        native attention in Triton (+ triton_jit.py)
    cuda.py          numba-cuda native attention, codebook in constant or shared memory (+ cuda_jit.py)
"""
