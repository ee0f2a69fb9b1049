"""Triton JIT code for llama.cpp's k-quants q2_k .. q6_k (imported lazily by codecs/kquant_triton.py
and matmul/kquant_triton_jit.py, so that registering the variants never imports triton).

Every value is found by index arithmetic on the super-block's byte arrays (the layouts of
formats/k_quant_layout.py): `codes` gives value v's integer level, `sub_scales` its sub-block's
d * s and dmin * m, both for a tensor of super-block indices `blk` and value indices `v` (0..255).
A kernel passes the fields as (d, dmin, scales, low codes, high bits): qs or ql for the low codes,
hmask or qh for the high bits; a field the type lacks is any tensor (it is never read).
The arithmetic and its order are the torch decoder's (kernels/formats/k_quants.py): sub_d * q -
sub_m in float32, launched with enable_fp_fusion=False so that no FMA rounds it once.
"""
import triton
import triton.language as tl


@triton.jit
def codes(low_ptr, high_ptr, blk, v, mask, TYPE: tl.constexpr):
    """int32 levels of values v of super-blocks blk: 0..3 (q2_k), -4..3 (q3_k), 0..15 (q4_k),
    0..31 (q5_k), -32..31 (q6_k)."""
    lane = v % 32
    if TYPE == "q2_k" or TYPE == "q3_k":
        byte = tl.load(low_ptr + blk * 64 + 32 * (v // 128) + lane, mask=mask, other=0).to(tl.int32)
        q = (byte >> (2 * ((v % 128) // 32))) & 3
        if TYPE == "q3_k":
            high = (tl.load(high_ptr + blk * 32 + lane, mask=mask, other=0).to(tl.int32) >> (v // 32)) & 1
            q = q - 4 + 4 * high
    elif TYPE == "q4_k" or TYPE == "q5_k":
        byte = tl.load(low_ptr + blk * 128 + 32 * (v // 64) + lane, mask=mask, other=0).to(tl.int32)
        q = (byte >> (4 * ((v // 32) % 2))) & 15
        if TYPE == "q5_k":
            high = (tl.load(high_ptr + blk * 32 + lane, mask=mask, other=0).to(tl.int32) >> (v // 32)) & 1
            q = q | (high << 4)
    else:
        half = v // 128
        rest = v % 128
        low = tl.load(low_ptr + blk * 128 + 64 * half + 32 * ((v // 32) % 2) + lane, mask=mask, other=0)
        high = tl.load(high_ptr + blk * 64 + 32 * half + lane, mask=mask, other=0).to(tl.int32)
        low = (low.to(tl.int32) >> (4 * (rest // 64))) & 15
        q = (low | (((high >> (2 * (rest // 32))) & 3) << 4)) - 32
    return q


@triton.jit
def sub_scales(d_ptr, dmin_ptr, scales_ptr, blk, j, mask, TYPE: tl.constexpr):
    """(d * s, dmin * m) of sub-blocks j (16 values: q2_k, q3_k, q6_k; 32: q4_k, q5_k) of super-blocks
    blk, float32; the types without a min return 0 in its place."""
    d = tl.load(d_ptr + blk, mask=mask, other=0.0).to(tl.float32)
    if TYPE == "q2_k":
        packed = tl.load(scales_ptr + blk * 16 + j, mask=mask, other=0).to(tl.int32)
        dmin = tl.load(dmin_ptr + blk, mask=mask, other=0.0).to(tl.float32)
        return d * (packed & 15).to(tl.float32), dmin * (packed >> 4).to(tl.float32)
    elif TYPE == "q3_k":
        byte = tl.load(scales_ptr + blk * 12 + j % 8, mask=mask, other=0).to(tl.int32)
        low = tl.where(j < 8, byte & 15, byte >> 4)
        high = (tl.load(scales_ptr + blk * 12 + 8 + j % 4, mask=mask, other=0).to(tl.int32) >> (2 * (j // 4))) & 3
        return d * ((low | (high << 4)) - 32).to(tl.float32), 0.0 * d
    elif TYPE == "q4_k" or TYPE == "q5_k":
        first = tl.load(scales_ptr + blk * 12 + j, mask=mask, other=0).to(tl.int32)
        second = tl.load(scales_ptr + blk * 12 + j + 4, mask=mask, other=0).to(tl.int32)
        below = tl.load(scales_ptr + blk * 12 + tl.maximum(j - 4, 0), mask=mask, other=0).to(tl.int32)
        s = tl.where(j < 4, first & 63, (second & 15) | ((below >> 6) << 4))
        m = tl.where(j < 4, second & 63, (second >> 4) | ((first >> 6) << 4))
        dmin = tl.load(dmin_ptr + blk, mask=mask, other=0.0).to(tl.float32)
        return d * s.to(tl.float32), dmin * m.to(tl.float32)
    else:
        s = tl.load(scales_ptr + blk * 16 + j, mask=mask, other=0).to(tl.float32)
        return d * s, 0.0 * d


@triton.jit
def dequantize_k_quant(d_ptr, dmin_ptr, scales_ptr, low_ptr, high_ptr, out_ptr, nblocks,
                       TYPE: tl.constexpr, SUB: tl.constexpr, HAS_MIN: tl.constexpr, BB: tl.constexpr):
    """A tile of BB super-blocks x 256 values: out = (d s) q (- dmin m where the type has a min)."""
    blk = (tl.program_id(0) * BB + tl.arange(0, BB))[:, None]
    v = tl.arange(0, 256)[None, :]
    mask = (blk < nblocks) & (v < 256)
    q = codes(low_ptr, high_ptr, blk, v, mask, TYPE)
    scale, offset = sub_scales(d_ptr, dmin_ptr, scales_ptr, blk, v // SUB, mask, TYPE)
    value = scale * q.to(tl.float32)
    if HAS_MIN:
        value = value - offset
    tl.store(out_ptr + blk * 256 + v, value.to(out_ptr.dtype.element_ty), mask=mask)
