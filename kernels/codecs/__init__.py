"""Codecs: ops `quantize` (float rows -> packed fields) and `dequantize` (back), spec.py.

    spec.py             the ops: inputs, reference, bytes, FLOPs, checks (bit-exact encode)
    torch.py            the reference: each format's own encode and decode
    codecs/blocks_numba.py     q8_0 / q4_0 / q4_1 and their rotated forms, numba
    codecs/turbo_numba.py      the turbo codebook formats, numba
    codecs/tcq_numba.py        the TCQ formats' decode, numba (+ tcq_numba_encode.py, the fused encode)
    codecs/rotated_rows_numba.py   turbo (no QJL) and TCQ decode a row at a time, the inverse FWHT in registers
    codecs/blocks_triton.py    block formats in Triton (+ blocks_triton_jit.py)
    codecs/turbo_triton.py     turbo formats in Triton (+ turbo_triton_jit.py)
    codecs/micro_triton.py     fp8, mxfp8/6/4 and nvfp4 dequantize in Triton (+ micro_triton_jit.py)
    codecs/tcq_cuda.py         TCQ decode in numba-cuda, table in constant or shared memory (+ tcq_cuda_jit.py)
"""
