"""Explicit-SIMD decoders of packed codes for numba kernels: numba intrinsics that emit LLVM vector IR.

LLVM's loop vectorizer sizes its vector bodies for long loops; a q4 block's 16 code bytes or a turbo
bit plane's 8 are too short, and those loops spent most of their time in set-up, alias checks and
epilogues (q4_0 attention at 32K, one thread: 2.3 ms of 7.2 decoding K, as much V). These write
16 or 32 float32 values as a few <16 x float> operations, whatever the loop around them. The IR is
generic (LLVM lowers it for the host, to zmm where there is AVX-512), except planes_to_f32's
GF2P8AFFINEQB path, taken only where the host has it (planes_isa).

The block and turbo decoders take `count` rows at a time, each at its own stride (the cache's
rows of consecutive positions): a C-contiguous uint8 array of codes with a flat byte offset, its
fp16 scales as uint16 bits with a flat element offset and the float32 table of their values, and
a C-contiguous float32 destination with a flat element offset. Offsets are not bounds-checked:
the callers compute them from their arrays' shapes.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from quantbench.kernels.common.numba_target import call_intrinsic, target_features

LANES = 16
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)
_BYTES = ir.VectorType(ir.IntType(8), LANES)


def _check_arrays(src, dst):
    if not (isinstance(src, types.Array) and src.dtype == types.uint8 and src.layout == "C"):
        raise TypingError(f"numba_vectors: the source must be a C-contiguous uint8 array, not {src}")
    if not (isinstance(dst, types.Array) and dst.dtype == types.float32 and dst.layout == "C"):
        raise TypingError(f"numba_vectors: the destination must be a C-contiguous float32 array, not {dst}")


def _check_scales(scales, f16):
    if not (isinstance(scales, types.Array) and scales.dtype == types.uint16 and scales.layout == "C"):
        raise TypingError(f"numba_vectors: the scales must be a C-contiguous uint16 array (fp16 bits), not {scales}")
    if not (isinstance(f16, types.Array) and f16.dtype == types.float32 and f16.ndim == 1):
        raise TypingError(f"numba_vectors: the fp16 table must be a 1-d float32 array, not {f16}")


def _check_bits_and_levels(name, bits, levels):
    if not isinstance(bits, types.IntegerLiteral) or not 1 <= bits.literal_value <= 4:
        raise TypingError(f"{name}: bits must be a constant 1..4, not {bits}")
    if not (isinstance(levels, types.Array) and levels.dtype == types.float32 and levels.ndim == 1):
        raise TypingError(f"{name}: levels must be a 1-d float32 array, not {levels}")


def _element_ptr(context, builder, array_type, array, offset):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [offset])


def _splat(builder, scalar):
    one = builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), scalar, ir.Constant(_I32, 0))
    zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    return builder.shuffle_vector(one, ir.Constant(_FLOATS, ir.Undefined), zeros)


def _load(builder, ptr, vector_type):
    return builder.load(builder.bitcast(ptr, vector_type.as_pointer()), align=1)


def _store16(builder, values, dst_ptr, lane_offset):
    target = builder.gep(dst_ptr, [lane_offset if isinstance(lane_offset, ir.Value) else _const(lane_offset)])
    builder.store(values, builder.bitcast(target, _FLOATS.as_pointer()), align=4)


def _const(value):
    return ir.Constant(_I64, value)


class _Rows:
    """The pointers of a decoder over `count` rows: row t's codes at src + t * src_stride (bytes), its
    fp16 scale bits at scales + t * sc_stride (elements), its values at dst + t * dst_stride. A loop
    over rows inside the decoder: called once per row, the kernels spent more on the call's set-up
    (offsets, the levels' broadcasts, spilled registers) than on a 64-value row's decode."""

    def __init__(self, context, builder, signature, args):
        self.builder = builder
        self.args = dict(zip(_ROW_ARGS, args))
        self.ptr = {name: _element_ptr(context, builder, signature.args[_ROW_ARGS.index(name)], self.args[name],
                                       self.args[offset])
                    for name, offset in (("src", "src_off"), ("scales", "sc_off"), ("dst", "dst_off"))}
        self.table = context.make_array(signature.args[6])(context, builder, self.args["f16"]).data

    def scale(self, scales_row, index):
        """The float32 value of the fp16 bits at scales_row[index]."""
        bits = self.builder.load(self.builder.gep(scales_row, [index]))
        return self.builder.load(self.builder.gep(self.table, [self.builder.zext(bits, _I64)]))

    def loop(self, body):
        """body(t, src_row, scales_row, dst_row) for each of the count rows t."""
        b, a = self.builder, self.args
        with cgutils.for_range(b, a["count"]) as loop:
            t = loop.index
            body(t, b.gep(self.ptr["src"], [b.mul(t, a["src_stride"])]),
                 b.gep(self.ptr["scales"], [b.mul(t, a["sc_stride"])]),
                 b.gep(self.ptr["dst"], [b.mul(t, a["dst_stride"])]))


_ROW_ARGS = ("src", "src_off", "src_stride", "scales", "sc_off", "sc_stride", "f16", "per_row", "count", "dst",
             "dst_off", "dst_stride")  # per_row: blocks (q8_0, q4), values (planes)


def _row_signature(src, scales, f16, dst, extra=()):
    i64 = types.int64
    return types.void(src, i64, i64, scales, i64, i64, f16, i64, i64, dst, i64, i64, *extra)


@intrinsic
def int8_to_f32(typingctx, src, src_off, src_stride, scales, sc_off, sc_stride, f16, blocks, count, dst, dst_off,
                dst_stride):
    """q8_0 rows: for t < count and b < blocks, dst[dst_off + t * dst_stride + 32 b + j] =
    f16[scales[sc_off + t * sc_stride + b]] * int8(src[src_off + t * src_stride + 32 b + j]), j < 32."""
    _check_arrays(src, dst)
    _check_scales(scales, f16)
    sig = _row_signature(src, scales, f16, dst)

    def codegen(context, builder, signature, args):
        rows = _Rows(context, builder, signature, args)

        def row(t, src_row, scales_row, dst_row):
            with cgutils.for_range(builder, rows.args["per_row"]) as block:
                b = block.index
                scale_v = _splat(builder, rows.scale(scales_row, b))
                first = builder.mul(b, _const(32))
                for half in range(2):
                    at = builder.add(first, _const(half * LANES))
                    codes = _load(builder, builder.gep(src_row, [at]), _BYTES)
                    _store16(builder, builder.fmul(builder.sitofp(codes, _FLOATS), scale_v), dst_row, at)

        rows.loop(row)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def nibbles_to_f32(typingctx, src, src_off, src_stride, scales, sc_off, sc_stride, f16, blocks, count, dst, dst_off,
                   dst_stride, mins):
    """q4_0 / q4_1 rows: block b of row t holds 16 bytes at src[src_off + t * src_stride + 16 b], low
    nibbles first (llama.cpp's order); value = d * nibble + shift with d = f16[scales[i]] and shift
    = f16[mins[i]] (q4_1) or -8 d where mins is None (q4_0), i = sc_off + t * sc_stride + b; the 32
    values go to dst[dst_off + t * dst_stride + 32 b:]."""
    _check_arrays(src, dst)
    _check_scales(scales, f16)
    with_min = not isinstance(mins, (types.NoneType, types.Omitted))
    if with_min:
        _check_scales(mins, f16)
    sig = _row_signature(src, scales, f16, dst, (mins,))

    def codegen(context, builder, signature, args):
        rows = _Rows(context, builder, signature, args)
        mins_start = _element_ptr(context, builder, signature.args[12], args[12], args[4]) if with_min else None
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 3), "llvm.fma.v16f32")

        def row(t, src_row, scales_row, dst_row):
            with cgutils.for_range(builder, rows.args["per_row"]) as block:
                b = block.index
                d = rows.scale(scales_row, b)
                if with_min:
                    shift = rows.scale(builder.gep(mins_start, [builder.mul(t, rows.args["sc_stride"])]), b)
                else:
                    shift = builder.fmul(d, ir.Constant(_F32, -8.0))
                scale_v, shift_v = _splat(builder, d), _splat(builder, shift)
                codes = _load(builder, builder.gep(src_row, [builder.mul(b, _const(16))]), _BYTES)
                low = builder.and_(codes, ir.Constant(_BYTES, [15] * LANES))
                high = builder.lshr(codes, ir.Constant(_BYTES, [4] * LANES))
                for half, nibbles in enumerate((low, high)):
                    values = builder.call(fma, [builder.uitofp(nibbles, _FLOATS), scale_v, shift_v])
                    _store16(builder, values, dst_row, builder.add(builder.mul(b, _const(32)), _const(half * LANES)))

        rows.loop(row)
        return context.get_dummy_value()

    return sig, codegen


def _selected_levels(builder, levels_ptr, depth):
    """A function of a chunk's bit masks giving each lane's level by a select tree on them."""
    splats = [_splat(builder, builder.load(builder.gep(levels_ptr, [ir.Constant(_I64, c)])))
              for c in range(1 << depth)]

    def level(masks):
        def pick(k, base):  # the level among codes base .. base + 2^(k+1) - 1 by bits k..0
            if k < 0:
                return splats[base]
            return builder.select(masks[k], pick(k - 1, base + (1 << k)), pick(k - 1, base))

        return pick(depth - 1, 0)

    return level


def planes_isa(context) -> str:
    """How planes_to_f32 turns bit planes into levels on the CPU numba compiles for: "gfni" where
    there is AVX-512 (BW, VBMI) with GFNI, else "select" (generic IR)."""
    return "gfni" if {"avx512f", "avx512bw", "avx512vbmi", "gfni"} <= target_features(context) else "select"


_BYTES64 = ir.VectorType(ir.IntType(8), 64)
_LONGS = ir.VectorType(_I64, 8)


def _gfni_chunk(builder, src_row, plane_stride, depth, chunk, table, scale_v, dst_row):
    """64 values from their bit planes: the planes' 8 bytes of this chunk in a matrix per 8 values
    (one shuffle), an 8x8 bit transpose by GF2P8AFFINEQB that gives each value's code in a byte,
    and one vpermps of the (up to 16) levels per 16 codes. A turbo3 row of 64 values took 3.5 ns
    so against 6.2 with the select tree (C, on the AVX-512 Xeon)."""
    planes = ir.Constant(_LONGS, [0] * 8)
    for k in range(depth):
        at = builder.add(builder.mul(plane_stride, _const(k)), builder.mul(chunk, _const(8)))
        word = builder.load(builder.bitcast(builder.gep(src_row, [at]), _I64.as_pointer()), align=1)
        planes = builder.insert_element(planes, word, ir.Constant(_I32, k))
    # GF2P8AFFINEQB's result bit j of a byte is the parity of (matrix byte 7 - j) AND the byte: matrix
    # byte 7 - k of the qword of values 8i .. 8i+7 is plane k's byte i, and unit bytes pick bit m.
    zero_byte = 8 * 7  # planes' lane 7 is zero (depth <= 4)
    matrix = builder.shuffle_vector(
        builder.bitcast(planes, _BYTES64), ir.Constant(_BYTES64, ir.Undefined),
        ir.Constant(ir.VectorType(_I32, 64), [8 * (7 - b) + i if 7 - b < depth else zero_byte
                                             for i in range(8) for b in range(8)]))
    units = ir.Constant(_BYTES64, [1 << (b % 8) for b in range(64)])
    codes = call_intrinsic(builder, "llvm.x86.vgf2p8affineqb.512", _BYTES64, units, matrix,
                           ir.Constant(ir.IntType(8), 0))
    for q in range(4):
        sixteen = builder.shuffle_vector(codes, ir.Constant(_BYTES64, ir.Undefined),
                                         ir.Constant(ir.VectorType(_I32, LANES), list(range(16 * q, 16 * q + 16))))
        levels = call_intrinsic(builder, "llvm.x86.avx512.permvar.sf.512", _FLOATS, table,
                      builder.zext(sixteen, ir.VectorType(_I32, LANES)))
        _store16(builder, builder.fmul(levels, scale_v), dst_row,
                 builder.add(builder.mul(chunk, _const(64)), _const(16 * q)))


@intrinsic
def planes_to_f32(typingctx, src, src_off, src_stride, scales, sc_off, sc_stride, f16, width, count, dst, dst_off,
                  dst_stride, plane_stride, bits, levels):
    """Turbo code groups of `width` values (a multiple of 16), one per row t < count:
    dst[dst_off + t * dst_stride + j] = f16[scales[sc_off + t * sc_stride]] * levels[code_j], code_j's
    bit k being bit j % 16 of the 16-bit little-endian word at
    src[src_off + t * src_stride + 2 * (j // 16) + k * plane_stride] (turbo's bit planes). bits (1..4)
    must be a compile-time constant; levels holds at least 16 entries.

    Where planes_isa is "gfni" and width is a multiple of 64, see _gfni_chunk. Elsewhere a lane's
    level comes from a select tree on the planes' bit masks, the levels broadcast once per call. One
    vpermps of the 16 levels indexed by codes built from the masks (vpmovm2d, a shift, two masked
    ors) was slower there: LLVM does not keep the masked ors (a turbo3 row took 14.5 ns against 9.4)."""
    _check_arrays(src, dst)
    _check_scales(scales, f16)
    _check_bits_and_levels("planes_to_f32", bits, levels)
    depth = bits.literal_value
    sig = _row_signature(src, scales, f16, dst, (types.int64, bits, levels))

    def codegen(context, builder, signature, args):
        rows = _Rows(context, builder, signature, args)
        stride = args[12]
        levels_ptr = context.make_array(signature.args[14])(context, builder, args[14]).data
        width = rows.args["per_row"]
        level = _selected_levels(builder, levels_ptr, depth)

        def select_row(t, src_row, scales_row, dst_row):
            scale_v = _splat(builder, rows.scale(scales_row, _const(0)))
            with cgutils.for_range(builder, builder.udiv(width, _const(LANES))) as loop:
                masks = []
                for k in range(depth):
                    offset = builder.add(builder.mul(loop.index, _const(2)), builder.mul(stride, _const(k)))
                    word = builder.load(builder.bitcast(builder.gep(src_row, [offset]),
                                                        ir.IntType(LANES).as_pointer()), align=1)
                    masks.append(builder.bitcast(word, ir.VectorType(ir.IntType(1), LANES)))
                _store16(builder, builder.fmul(level(masks), scale_v), dst_row, builder.mul(loop.index, _const(LANES)))

        if planes_isa(context) != "gfni":
            rows.loop(select_row)
            return context.get_dummy_value()
        table = builder.load(builder.bitcast(levels_ptr, _FLOATS.as_pointer()), align=4)

        def gfni_row(t, src_row, scales_row, dst_row):
            scale_v = _splat(builder, rows.scale(scales_row, _const(0)))
            with cgutils.for_range(builder, builder.udiv(width, _const(64))) as loop:
                _gfni_chunk(builder, src_row, stride, depth, loop.index, table, scale_v, dst_row)

        whole = builder.icmp_unsigned("==", builder.urem(width, _const(64)), _const(0))
        with builder.if_else(whole) as (chunks_of_64, otherwise):
            with chunks_of_64:
                rows.loop(gfni_row)
            with otherwise:
                rows.loop(select_row)
        return context.get_dummy_value()

    return sig, codegen
