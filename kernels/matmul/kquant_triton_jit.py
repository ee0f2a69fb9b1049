"""Triton JIT code for the fused weight matmuls on llama.cpp's k-quants (imported lazily by
matmul/kquant_triton.py, so that registering the variants never imports triton).

A program computes a [BM, BN] tile of y = x @ W^T, walking k BK = 16 weights at a time (a 16-value
sub-block, or half a 32-value one): the chunk's integer levels [BN, 16] are found in registers by
the dequantize kernel's index arithmetic (codecs/kquant_triton_jit.py), dotted with the activations
as floats into a [BM, BN] chunk sum, which is scaled once by the sub-block's d * s; the types with
a min subtract dmin * m times the chunk's activation sum. Products are broadcast [BM, BN, 16] and
summed (tl.sum), not tl.dot, as in matmul/triton_jit.py: that serves BM = 1 (GEMV) and keeps
float32 products exact.
"""
import triton
import triton.language as tl

from quantbench.kernels.codecs.kquant_triton_jit import codes, sub_scales


@triton.jit
def fused_k_quant(x_ptr, d_ptr, dmin_ptr, scales_ptr, low_ptr, high_ptr, y_ptr, m, n, k,
                  TYPE: tl.constexpr, SUB: tl.constexpr, HAS_MIN: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    outs = tl.program_id(1) * BN + tl.arange(0, BN)
    row_ok = rows < m
    out_ok = outs < n
    t = tl.arange(0, BK)
    nb = k // 256
    acc = tl.zeros((BM, BN), tl.float32)
    for start in range(0, k, BK):
        blk = outs * nb + start // 256
        v = start % 256 + t
        q = codes(low_ptr, high_ptr, blk[:, None], v[None, :], out_ok[:, None], TYPE).to(tl.float32)
        scale, offset = sub_scales(d_ptr, dmin_ptr, scales_ptr, blk, (start % 256) // SUB, out_ok, TYPE)
        a = tl.load(x_ptr + rows[:, None] * k + start + t[None, :], mask=row_ok[:, None], other=0.0)
        chunk = tl.sum(a[:, None, :] * q[None, :, :], axis=2) * scale[None, :]
        if HAS_MIN:
            chunk = chunk - tl.sum(a, axis=1)[:, None] * offset[None, :]
        acc += chunk
    tl.store(y_ptr + rows[:, None] * n + outs[None, :], acc, mask=row_ok[:, None] & out_ok[None, :])
