"""Triton JIT code for the fused weight matmuls on the floating-point micro formats (imported lazily
by matmul/micro_triton.py, so that registering the variants never imports triton).

A program computes a [BM, BN] tile of y = x @ W^T, walking k BK = 16 weights at a time (nvfp4's
block; an MX block of 32 is two such chunks under one scale): the chunk's codes [BN, 16] are loaded
and decoded in registers by the dequantize kernel's bit arithmetic (codecs/micro_triton_jit.py),
multiplied with the activations as floats and summed into a [BM, BN] float32 chunk sum, which is
scaled once by its block scale (E8M0 or E4M3) before it is accumulated. The second-level fp32
scale (fp8's row or tensor scale, nvfp4's tensor or row scale) multiplies the accumulator once at
the end. Products are broadcast [BM, BN, 16] and summed (tl.sum), not tl.dot, as in
matmul/triton_jit.py: that serves BM = 1 (GEMV) and keeps float32 products exact.
"""
import triton
import triton.language as tl

from quantbench.kernels.codecs.micro_triton_jit import block_scale_value, element_value, load_codes


@triton.jit
def fused_micro(x_ptr, codes_ptr, block_scales_ptr, row_scales_ptr, y_ptr, m, n, k, row_scale_stride,
                EXP: tl.constexpr, MAN: tl.constexpr, BIAS: tl.constexpr, MAX_NORMAL: tl.constexpr,
                SPECIALS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_SCALE: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    outs = tl.program_id(1) * BN + tl.arange(0, BN)
    row_ok = rows < m
    out_ok = outs < n
    t = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), tl.float32)
    for start in range(0, k, BK):
        kk = start + t
        k_ok = kk < k  # only fp8 takes a k that is no multiple of BK
        code = load_codes(codes_ptr, outs[:, None] * k + kk[None, :], out_ok[:, None] & k_ok[None, :], 1 + EXP + MAN)
        w = element_value(code, EXP, MAN, BIAS, MAX_NORMAL, SPECIALS)
        a = tl.load(x_ptr + rows[:, None] * k + kk[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        chunk = tl.sum(a[:, None, :] * w[None, :, :], axis=2)
        if BLOCK_SCALE != "":
            scale_code = tl.load(block_scales_ptr + outs * (k // BLOCK) + start // BLOCK, mask=out_ok, other=0)
            chunk = chunk * block_scale_value(scale_code.to(tl.int32), BLOCK_SCALE)[None, :]
        acc += chunk
    second = tl.load(row_scales_ptr + outs * row_scale_stride, mask=out_ok, other=0.0)
    tl.store(y_ptr + rows[:, None] * n + outs[None, :], acc * second[None, :], mask=row_ok[:, None] & out_ok[None, :])
