"""Triton JIT code for the llama.cpp block formats (imported lazily by codecs/blocks_triton.py, so that
registering the variants never imports triton).

Encodings are bit-identical to the torch reference (kernels/formats/ggml_blocks.py): float32
throughout, IEEE division (`div_rn`, not Triton's approximate one), and callers launch with
`enable_fp_fusion=False` so that no multiply-add is contracted into an FMA that rounds once.
"""
import triton
import triton.language as tl


@triton.jit
def tile(nblocks, BP: tl.constexpr, WIDTH: tl.constexpr):
    """Block indices, in-block columns, row mask and element offsets of this program's tile."""
    blk = tl.program_id(0) * BP + tl.arange(0, BP)
    col = tl.arange(0, WIDTH)
    valid = blk < nblocks
    return blk, col, valid, valid[:, None], blk[:, None] * 32 + col[None, :]


@triton.jit
def reciprocal(d):
    """ggml's `d ? 1.0f/d : 0.0f`, with IEEE division."""
    safe = tl.where(d == 0, 1.0, d)
    return tl.where(d == 0, 0.0, tl.math.div_rn(tl.full(d.shape, 1.0, tl.float32), safe))


@triton.jit
def first_index(lo, hi, target, col):
    """Index (0..31) of the first value of the block equal to `target` (per block)."""
    first_lo = tl.min(tl.where(lo == target[:, None], col[None, :], 32), axis=1)
    first_hi = tl.min(tl.where(hi == target[:, None], col[None, :] + 16, 32), axis=1)
    return tl.minimum(first_lo, first_hi)


@triton.jit
def quantize_q8_0(x_ptr, d_ptr, qs_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 32)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    d = tl.math.div_rn(tl.max(tl.abs(x), axis=1), tl.full((BP,), 127.0, tl.float32))
    v = x * reciprocal(d)[:, None]
    whole = v.to(tl.int32)  # truncation; the next line makes it C's roundf (ties away from 0)
    q = whole + (2.0 * (v - whole.to(tl.float32))).to(tl.int32)
    tl.store(qs_ptr + offs, q.to(tl.int8), mask=mask)
    tl.store(d_ptr + blk, d.to(tl.float16), mask=valid)


@triton.jit
def quantize_q4_0(x_ptr, d_ptr, qs_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 16)
    lo = tl.load(x_ptr + offs, mask=mask, other=0.0)
    hi = tl.load(x_ptr + offs + 16, mask=mask, other=0.0)
    amax = tl.maximum(tl.max(tl.abs(lo), axis=1), tl.max(tl.abs(hi), axis=1))
    # ggml keeps the first value of largest magnitude, with its sign (+0.0 for a zero block)
    first = first_index(tl.abs(lo), tl.abs(hi), amax, col)[:, None]
    vmax = tl.sum(tl.where(col[None, :] == first, lo, 0.0), axis=1) + \
        tl.sum(tl.where(col[None, :] + 16 == first, hi, 0.0), axis=1)
    vmax = tl.where(amax == 0, 0.0, vmax)
    d = tl.math.div_rn(vmax, tl.full((BP,), -8.0, tl.float32))
    inv = reciprocal(d)[:, None]
    q_lo = tl.minimum((lo * inv + 8.5).to(tl.int32), 15)
    q_hi = tl.minimum((hi * inv + 8.5).to(tl.int32), 15)
    tl.store(qs_ptr + blk[:, None] * 16 + col[None, :], (q_lo | (q_hi << 4)).to(tl.uint8), mask=mask)
    tl.store(d_ptr + blk, d.to(tl.float16), mask=valid)


@triton.jit
def quantize_q4_1(x_ptr, d_ptr, m_ptr, qs_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 16)
    lo = tl.load(x_ptr + offs, mask=mask, other=0.0)
    hi = tl.load(x_ptr + offs + 16, mask=mask, other=0.0)
    vmin = tl.minimum(tl.min(lo, axis=1), tl.min(hi, axis=1))
    vmax = tl.maximum(tl.max(lo, axis=1), tl.max(hi, axis=1))
    d = tl.math.div_rn(vmax - vmin, tl.full((BP,), 15.0, tl.float32))
    d = tl.where(d == 0, 0.0, d)  # ggml's d is never -0.0; min/max may pick either zero here
    inv = reciprocal(d)[:, None]
    q_lo = tl.minimum(((lo - vmin[:, None]) * inv + 0.5).to(tl.int32), 15)
    q_hi = tl.minimum(((hi - vmin[:, None]) * inv + 0.5).to(tl.int32), 15)
    tl.store(qs_ptr + blk[:, None] * 16 + col[None, :], (q_lo | (q_hi << 4)).to(tl.uint8), mask=mask)
    # a zero minimum takes the sign of the block's first zero, as ggml's sequential loop keeps it
    first = first_index(lo, hi, vmin, col)[:, None]
    sign_lo = tl.where(col[None, :] == first, lo.to(tl.int32, bitcast=True) < 0, 0).to(tl.int32)
    sign_hi = tl.where(col[None, :] + 16 == first, hi.to(tl.int32, bitcast=True) < 0, 0).to(tl.int32)
    negative = tl.max(sign_lo, axis=1) | tl.max(sign_hi, axis=1)
    signed_zero = (negative << 31).to(tl.float32, bitcast=True)
    m = tl.where(vmin == 0, signed_zero, vmin)
    tl.store(d_ptr + blk, d.to(tl.float16), mask=valid)
    tl.store(m_ptr + blk, m.to(tl.float16), mask=valid)


@triton.jit
def dequantize_q8_0(d_ptr, qs_ptr, out_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 32)
    d = tl.load(d_ptr + blk, mask=valid, other=0.0).to(tl.float32)
    q = tl.load(qs_ptr + offs, mask=mask, other=0).to(tl.float32)
    tl.store(out_ptr + offs, (q * d[:, None]).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def dequantize_q4_0(d_ptr, qs_ptr, out_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 16)
    d = tl.load(d_ptr + blk, mask=valid, other=0.0).to(tl.float32)[:, None]
    byte = tl.load(qs_ptr + blk[:, None] * 16 + col[None, :], mask=mask, other=0).to(tl.int32)
    lo = ((byte & 15) - 8).to(tl.float32) * d
    hi = ((byte >> 4) - 8).to(tl.float32) * d
    tl.store(out_ptr + offs, lo.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + offs + 16, hi.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def dequantize_q4_1(d_ptr, m_ptr, qs_ptr, out_ptr, nblocks, BP: tl.constexpr):
    blk, col, valid, mask, offs = tile(nblocks, BP, 16)
    d = tl.load(d_ptr + blk, mask=valid, other=0.0).to(tl.float32)[:, None]
    m = tl.load(m_ptr + blk, mask=valid, other=0.0).to(tl.float32)[:, None]
    byte = tl.load(qs_ptr + blk[:, None] * 16 + col[None, :], mask=mask, other=0).to(tl.int32)
    lo = (byte & 15).to(tl.float32) * d + m
    hi = (byte >> 4).to(tl.float32) * d + m
    tl.store(out_ptr + offs, lo.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + offs + 16, hi.to(out_ptr.dtype.element_ty), mask=mask)


QUANTIZE = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0, "q4_1": quantize_q4_1}
DEQUANTIZE = {"q8_0": dequantize_q8_0, "q4_0": dequantize_q4_0, "q4_1": dequantize_q4_1}
