"""Triton JIT code for the floating-point micro formats fp8, mxfp8/6/4 and nvfp4 (imported lazily by
codecs/micro_triton.py and by matmul/micro_triton_jit.py, so that registering the variants never
imports triton).

Codes are decoded by bit arithmetic rather than a table lookup: an element's sign, exponent and
mantissa fields move into float32's exactly with a few integer operations in registers, where a
table would cost a gather per element that competes with the code loads themselves (in the GEMV's
inner loop above all), and where a cast to Triton's fp8 types would not compile before sm_89.
The values are Element.table()'s bit for bit, NaN and infinity codes included.
"""
import triton
import triton.language as tl


@triton.jit
def load_codes(codes_ptr, index, mask, BITS: tl.constexpr):
    """The BITS-bit codes (int32) of elements `index` of a packed stream: element i occupies bits
    i * BITS .. i * BITS + BITS - 1, little-endian (minifloat.pack_codes; also across blocks)."""
    bit = index * BITS
    byte = bit >> 3
    shift = bit & 7
    word = tl.load(codes_ptr + byte, mask=mask, other=0).to(tl.int32)
    if 8 % BITS != 0:  # 6-bit codes at bit 4 or 6 of a byte reach into the next one
        straddles = mask & (shift + BITS > 8)
        word = word | (tl.load(codes_ptr + byte + 1, mask=straddles, other=0).to(tl.int32) << 8)
    return (word >> shift) & ((1 << BITS) - 1)


@triton.jit
def element_value(code, EXP: tl.constexpr, MAN: tl.constexpr, BIAS: tl.constexpr, MAX_NORMAL: tl.constexpr,
                  SPECIALS: tl.constexpr):
    """int32 codes (sign | E | M, minifloat.Element) -> float32 values. SPECIALS: the element has
    codes above its largest normal value (fp8): NaN, or infinity where M = 0 (E5M2's E = 31)."""
    biased = (code >> MAN) & ((1 << EXP) - 1)
    mantissa = code & ((1 << MAN) - 1)
    # (implicit bit | M) * 2^(max(E, 1) - bias - m): normal and subnormal values alike, both factors exact
    significand = (mantissa | tl.where(biased > 0, 1 << MAN, 0)).to(tl.float32)
    power = ((tl.maximum(biased, 1) + (127 - BIAS - MAN)) << 23).to(tl.float32, bitcast=True)
    magnitude = significand * power
    if SPECIALS:
        special = tl.where(mantissa == 0, float("inf"), float("nan"))
        magnitude = tl.where(magnitude > MAX_NORMAL, special, magnitude)
    sign = (code >> (EXP + MAN)) << 31  # by bits, so that the sign of zero survives
    return (magnitude.to(tl.int32, bitcast=True) | sign).to(tl.float32, bitcast=True)


@triton.jit
def block_scale_value(code, BLOCK_SCALE: tl.constexpr):
    """Block scale codes -> float32: "e8m0" (MX: 2^(code - 127), code 0 the subnormal 2^-127, 255 NaN)
    or "e4m3" (nvfp4: an E4M3 value, minifloat.E4M3)."""
    if BLOCK_SCALE == "e8m0":
        power = tl.where(code == 0, 1 << 22, code << 23).to(tl.float32, bitcast=True)
        return tl.where(code == 255, float("nan"), power)
    else:
        return element_value(code, 4, 3, 7, 448.0, True)


@triton.jit
def dequantize_micro(codes_ptr, block_scales_ptr, row_scales_ptr, out_ptr, rows, dim, row_scale_stride,
                     EXP: tl.constexpr, MAN: tl.constexpr, BIAS: tl.constexpr, MAX_NORMAL: tl.constexpr,
                     SPECIALS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_SCALE: tl.constexpr,
                     BR: tl.constexpr, BD: tl.constexpr):
    """A [BR rows, BD values] tile: out = value * (block scale * the row's fp32 scale), the
    reference's order of roundings (nvfp4: E4M3 block scale times tensor scale, then the value;
    fp8 has no block scale, BLOCK_SCALE "")."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    c = tl.program_id(1) * BD + tl.arange(0, BD)
    row_ok = r < rows
    mask = row_ok[:, None] & (c < dim)[None, :]
    index = r[:, None] * dim + c[None, :]
    value = element_value(load_codes(codes_ptr, index, mask, 1 + EXP + MAN), EXP, MAN, BIAS, MAX_NORMAL, SPECIALS)
    scale = tl.load(row_scales_ptr + r * row_scale_stride, mask=row_ok, other=0.0)[:, None]
    if BLOCK_SCALE != "":
        code = tl.load(block_scales_ptr + index // BLOCK, mask=mask, other=0).to(tl.int32)
        scale = block_scale_value(code, BLOCK_SCALE) * scale
    tl.store(out_ptr + index, (value * scale).to(out_ptr.dtype.element_ty), mask=mask)
