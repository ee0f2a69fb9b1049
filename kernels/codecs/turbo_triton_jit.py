"""Triton JIT code for turbo quantize / dequantize (imported lazily by codecs/turbo_triton.py).

One program encodes or decodes a tile of ROWS groups of G values, in the order of the steps of
kernels/formats/turbo.py: norms summed in float64, IEEE division (div_rn), the FWHT butterflies of
fwht/triton_jit.py, a count of the boundaries strictly below each value (torch.bucketize),
float64 -> float32 -> fp16 norms. Launched with enable_fp_fusion=False, so no multiply-add is
contracted and the codes equal the reference's bit for bit.
"""
import triton
import triton.language as tl

from quantbench.kernels.fwht.triton_jit import butterflies


@triton.jit
def quantize_kernel(x_ptr, signs_ptr, bounds_ptr, levels_ptr, codes_ptr, norms_ptr, ngroups, scale,
                    G: tl.constexpr, LOG_G: tl.constexpr, BITS: tl.constexpr, ROWS: tl.constexpr,
                    ROTATE: tl.constexpr, NORM_CORRECTION: tl.constexpr):
    group = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    col = tl.arange(0, G)
    live = group < ngroups
    x = tl.load(x_ptr + group[:, None] * G + col[None, :], mask=live[:, None], other=0.0)
    wide = x.to(tl.float64)
    norm = tl.sqrt(tl.sum(wide * wide, axis=1))
    norm32 = norm.to(tl.float32)
    div = tl.where(norm32 > 0, norm32, 1.0)
    y = tl.div_rn(x, div[:, None]) * tl.load(signs_ptr + col)[None, :]
    if ROTATE:
        y = butterflies(y, ROWS, G, LOG_G) * scale
    code = tl.zeros((ROWS, G), tl.int32)
    for b in tl.static_range((1 << BITS) - 1):
        code += (y > tl.load(bounds_ptr + b)).to(tl.int32)
    if NORM_CORRECTION:
        level = tl.load(levels_ptr + code).to(tl.float64)
        norm = norm / tl.sqrt(tl.sum(level * level, axis=1))
    tl.store(norms_ptr + group, norm.to(tl.float32).to(tl.float16), mask=live)
    weight = 1 << tl.arange(0, 8)
    byte = tl.arange(0, G // 8)
    for k in tl.static_range(BITS):
        plane = tl.sum(tl.reshape((code >> k) & 1, (ROWS, G // 8, 8)) * weight[None, None, :], axis=2)
        tl.store(codes_ptr + group[:, None] * (BITS * G // 8) + k * (G // 8) + byte[None, :],
                 plane.to(tl.uint8), mask=live[:, None])


@triton.jit
def dequantize_kernel(codes_ptr, norms_ptr, signs_ptr, levels_ptr, out_ptr, ngroups, scale,
                      G: tl.constexpr, LOG_G: tl.constexpr, BITS: tl.constexpr, ROWS: tl.constexpr,
                      ROTATE: tl.constexpr):
    group = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    col = tl.arange(0, G)
    live = group < ngroups
    code = tl.zeros((ROWS, G), tl.int32)
    for k in tl.static_range(BITS):
        byte = tl.load(codes_ptr + group[:, None] * (BITS * G // 8) + k * (G // 8) + col[None, :] // 8,
                       mask=live[:, None], other=0)
        code |= ((byte.to(tl.int32) >> (col[None, :] % 8)) & 1) << k
    norm = tl.load(norms_ptr + group, mask=live, other=0.0).to(tl.float32)
    y = tl.load(levels_ptr + code) * norm[:, None]
    if ROTATE:
        y = butterflies(y, ROWS, G, LOG_G) * scale
    y = y * tl.load(signs_ptr + col)[None, :]
    tl.store(out_ptr + group[:, None] * G + col[None, :], y, mask=live[:, None])
