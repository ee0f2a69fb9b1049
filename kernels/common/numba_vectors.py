"""Explicit-SIMD decoders of packed codes for numba kernels: numba intrinsics that emit LLVM vector IR.

LLVM's loop vectorizer sizes its vector bodies for long loops; a q4 block's 16 code bytes or a turbo
bit plane's 8 are too short, and those loops spent most of their time in set-up, alias checks and
epilogues (q4_0 attention at 32K, one thread: 2.3 ms of 7.2 decoding K, as much V). These write
16 or 32 float32 values as a few <16 x float> operations, whatever the loop around them. The IR is
generic (no x86 intrinsics): LLVM lowers it for the host, to zmm where there is AVX-512.

Each takes a C-contiguous uint8 array with a flat byte offset into it, and a C-contiguous float32
array with a flat element offset, and writes dst[dst_off:dst_off + 32] (16 for planes_to_f32).
Offsets are not bounds-checked: the callers compute them from their arrays' shapes.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

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
    target = builder.gep(dst_ptr, [ir.Constant(_I64, lane_offset)])
    builder.store(values, builder.bitcast(target, _FLOATS.as_pointer()), align=4)


@intrinsic
def int8_to_f32(typingctx, src, src_off, dst, dst_off, scale):
    """dst[dst_off + j] = scale * int8(src[src_off + j]) for j < 32 (a q8_0 block)."""
    _check_arrays(src, dst)
    sig = types.void(src, src_off, dst, dst_off, types.float32)

    def codegen(context, builder, signature, args):
        s, so, d, do, sc = args
        src_ptr = _element_ptr(context, builder, signature.args[0], s, so)
        dst_ptr = _element_ptr(context, builder, signature.args[2], d, do)
        scale_v = _splat(builder, sc)
        for half in range(2):
            codes = _load(builder, builder.gep(src_ptr, [ir.Constant(_I64, half * LANES)]), _BYTES)
            _store16(builder, builder.fmul(builder.sitofp(codes, _FLOATS), scale_v), dst_ptr, half * LANES)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def nibbles_to_f32(typingctx, src, src_off, dst, dst_off, scale, shift):
    """dst[dst_off + j] = scale * (src[src_off + j] & 15) + shift and dst[dst_off + 16 + j] =
    scale * (src[src_off + j] >> 4) + shift for j < 16 (a q4_0 or q4_1 block: llama.cpp's order,
    low nibbles first)."""
    _check_arrays(src, dst)
    sig = types.void(src, src_off, dst, dst_off, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        s, so, d, do, sc, sh = args
        codes = _load(builder, _element_ptr(context, builder, signature.args[0], s, so), _BYTES)
        dst_ptr = _element_ptr(context, builder, signature.args[2], d, do)
        scale_v, shift_v = _splat(builder, sc), _splat(builder, sh)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 3), "llvm.fma.v16f32")
        low = builder.and_(codes, ir.Constant(_BYTES, [15] * LANES))
        high = builder.lshr(codes, ir.Constant(_BYTES, [4] * LANES))
        for half, nibbles in enumerate((low, high)):
            values = builder.call(fma, [builder.uitofp(nibbles, _FLOATS), scale_v, shift_v])
            _store16(builder, values, dst_ptr, half * LANES)
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


@intrinsic
def planes_to_f32(typingctx, src, src_off, plane_stride, bits, levels, scale, dst, dst_off, count):
    """dst[dst_off + j] = scale * levels[code_j] for j < count (a multiple of 16), code_j's bit k
    being bit j % 16 of the 16-bit little-endian word at src[src_off + 2 * (j // 16) + k * plane_stride]
    (turbo's bit planes). bits (1..4) must be a compile-time constant. A lane's level comes from a
    select tree on the planes' bit masks, the levels broadcast once per call. One vpermps of the 16
    levels indexed by the lanes' codes (built from the masks: vpmovm2d, a shift, two masked ors) was
    slower on a Xeon with AVX-512: a turbo3 row (64 values) took 14.5 ns against 9.4 with the tree."""
    _check_arrays(src, dst)
    _check_bits_and_levels("planes_to_f32", bits, levels)
    depth = bits.literal_value
    sig = types.void(src, src_off, plane_stride, bits, levels, types.float32, dst, dst_off, types.int64)

    def codegen(context, builder, signature, args):
        s, so, stride, _, lv, sc, d, do, n = args
        src_ptr = _element_ptr(context, builder, signature.args[0], s, so)
        dst_ptr = _element_ptr(context, builder, signature.args[6], d, do)
        stride = context.cast(builder, stride, signature.args[2], types.intp)
        levels_ptr = context.make_array(signature.args[4])(context, builder, lv).data
        level = _selected_levels(builder, levels_ptr, depth)
        scale_v = _splat(builder, sc)
        with cgutils.for_range(builder, builder.udiv(n, ir.Constant(_I64, LANES))) as loop:
            masks = []
            for k in range(depth):
                offset = builder.add(builder.mul(loop.index, ir.Constant(_I64, 2)),
                                     builder.mul(stride, ir.Constant(_I64, k)))
                word = builder.load(builder.bitcast(builder.gep(src_ptr, [offset]), ir.IntType(LANES).as_pointer()),
                                    align=1)
                masks.append(builder.bitcast(word, ir.VectorType(ir.IntType(1), LANES)))
            target = builder.gep(dst_ptr, [builder.mul(loop.index, ir.Constant(_I64, LANES))])
            builder.store(builder.fmul(level(masks), scale_v), builder.bitcast(target, _FLOATS.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def trellis_to_f32(typingctx, src, src_off, bits, window, levels, mask, scale, dst, dst_off, count):
    """dst[dst_off + j] = scale * levels[state_j] for j < count (a multiple of 8): a trellis code
    group's values. state_j is the shift register after value j: the low L bits (mask = 2^L - 1) of
    the bit stream at src[src_off:] (bits bits a value, most significant first) up to value j's
    bits, `window` holding the stream's bits before the first value (the tail-biting wrap). As no
    state depends on the one before it, 8 come out of one vector shift of a 64-bit window and one
    gather of their levels (levels: float32, 2^L entries); bits (1..4) must be a compile-time
    constant, L + 8 bits at most 64."""
    _check_arrays(src, dst)
    _check_bits_and_levels("trellis_to_f32", bits, levels)
    k = bits.literal_value
    sig = types.void(src, src_off, bits, types.int64, levels, types.int64, types.float32, dst, dst_off, types.int64)
    longs = ir.VectorType(_I64, 8)
    eight = ir.VectorType(_F32, 8)

    def codegen(context, builder, signature, args):
        s, so, _, w0, lv, m, sc, d, do, n = args
        src_ptr = _element_ptr(context, builder, signature.args[0], s, so)
        dst_ptr = _element_ptr(context, builder, signature.args[7], d, do)
        levels_ptr = context.make_array(signature.args[4])(context, builder, lv).data
        window = cgutils.alloca_once_value(builder, w0)
        base = builder.shuffle_vector(
            builder.insert_element(ir.Constant(longs, ir.Undefined), builder.ptrtoint(levels_ptr, _I64),
                                   ir.Constant(_I32, 0)),
            ir.Constant(longs, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8), [0] * 8))
        mask_v = builder.shuffle_vector(builder.insert_element(ir.Constant(longs, ir.Undefined), m,
                                                               ir.Constant(_I32, 0)),
                                        ir.Constant(longs, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8), [0] * 8))
        shifts = ir.Constant(longs, [k * (7 - i) for i in range(8)])
        scale8 = builder.shuffle_vector(builder.insert_element(ir.Constant(eight, ir.Undefined), sc,
                                                               ir.Constant(_I32, 0)),
                                        ir.Constant(eight, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8), [0] * 8))
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(eight, [ir.VectorType(_F32.as_pointer(), 8), _I32,
                                                    ir.VectorType(ir.IntType(1), 8), eight]),
            "llvm.masked.gather.v8f32.v8p0")
        with cgutils.for_range(builder, builder.udiv(n, ir.Constant(_I64, 8))) as loop:
            w = builder.load(window)
            for b in range(k):  # the next k bytes: 8 values' bits
                byte = builder.load(builder.gep(src_ptr, [builder.add(builder.mul(loop.index, ir.Constant(_I64, k)),
                                                                       ir.Constant(_I64, b))]))
                w = builder.or_(builder.shl(w, ir.Constant(_I64, 8)), builder.zext(byte, _I64))
            builder.store(w, window)
            splat = builder.shuffle_vector(builder.insert_element(ir.Constant(longs, ir.Undefined), w,
                                                                  ir.Constant(_I32, 0)),
                                           ir.Constant(longs, ir.Undefined),
                                           ir.Constant(ir.VectorType(_I32, 8), [0] * 8))
            states = builder.and_(builder.lshr(splat, shifts), mask_v)
            pointers = builder.inttoptr(builder.add(base, builder.shl(states, ir.Constant(longs, [2] * 8))),
                                        ir.VectorType(_F32.as_pointer(), 8))
            values = builder.call(gather, [pointers, ir.Constant(_I32, 4), ir.Constant(ir.VectorType(ir.IntType(1), 8),
                                                                                         [1] * 8),
                                           ir.Constant(eight, ir.Undefined)])
            target = builder.gep(dst_ptr, [builder.mul(loop.index, ir.Constant(_I64, 8))])
            builder.store(builder.fmul(values, scale8), builder.bitcast(target, eight.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen
