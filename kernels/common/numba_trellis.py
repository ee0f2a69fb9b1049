"""The explicit-SIMD decoder of trellis-coded rows (the TCQ formats) for numba kernels, an intrinsic
of the same row interface as the block and turbo decoders of numba_vectors.py.

A value's state is the L-bit window of its group's bit stream that ends with its own k bits, so no
state depends on the one before it: 8 states come out of one vector shift of a 64-bit window of
the stream, and one gather reads their levels (a table of 2^L float32). The rows are looped over
inside the decoder: called once per row, the TCQ attention kernel spent more on each call's set-up
(the row's offsets, its wrap bytes read with index checks, the broadcasts) than on the gathers.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from quantbench.kernels.common.numba_vectors import (
    _F32,
    _I32,
    _I64,
    _check_arrays,
    _check_bits_and_levels,
    _check_scales,
    _const,
    _row_signature,
    _Rows,
)

WRAP_BITS = 24  # a stream's last bits that start its shift register: L <= 16 (formats/trellis.py)
_LONGS = ir.VectorType(_I64, 8)
_EIGHT = ir.VectorType(_F32, 8)


def _splat8(builder, vector_type, scalar):
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8),
                                                                                           [0] * 8))


@intrinsic
def trellis_to_f32(typingctx, src, src_off, src_stride, scales, sc_off, sc_stride, f16, width, count, dst, dst_off,
                   dst_stride, bits, levels):
    """Trellis code groups of `width` values (a multiple of 8), one per row t < count:
    dst[dst_off + t * dst_stride + j] = f16[scales[sc_off + t * sc_stride]] * levels[state_j], state_j
    the shift register after value j (its low L bits, levels holding 2^L float32) of the row's
    tail-biting stream src[src_off + t * src_stride:][:width * bits / 8] (bits bits a value, most
    significant first), started from the stream's last WRAP_BITS bits. bits (1..4) must be a
    compile-time constant."""
    _check_arrays(src, dst)
    _check_scales(scales, f16)
    _check_bits_and_levels("trellis_to_f32", bits, levels)
    k = bits.literal_value
    sig = _row_signature(src, scales, f16, dst, (bits, levels))

    def codegen(context, builder, signature, args):
        rows = _Rows(context, builder, signature, args)
        table = context.make_array(signature.args[13])(context, builder, args[13])
        base = _splat8(builder, _LONGS, builder.ptrtoint(table.data, _I64))
        mask = _splat8(builder, _LONGS, builder.sub(table.nitems, _const(1)))
        shifts = ir.Constant(_LONGS, [k * (7 - i) for i in range(8)])
        width = rows.args["per_row"]
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_EIGHT, [ir.VectorType(_F32.as_pointer(), 8), _I32,
                                                     ir.VectorType(ir.IntType(1), 8), _EIGHT]),
            "llvm.masked.gather.v8f32.v8p0")
        window = cgutils.alloca_once(builder, _I64)

        def row(t, src_row, scales_row, dst_row):
            scale = _splat8(builder, _EIGHT, rows.scale(scales_row, _const(0)))
            end = builder.udiv(builder.mul(width, _const(k)), _const(8))
            tail = _const(0)
            for b in range(WRAP_BITS // 8):
                byte = builder.load(builder.gep(src_row, [builder.sub(end, _const(WRAP_BITS // 8 - b))]))
                tail = builder.or_(builder.shl(tail, _const(8)), builder.zext(byte, _I64))
            builder.store(tail, window)
            with cgutils.for_range(builder, builder.udiv(width, _const(8))) as loop:
                w = builder.load(window)
                for b in range(k):  # the next k bytes: 8 values' bits
                    at = builder.add(builder.mul(loop.index, _const(k)), _const(b))
                    w = builder.or_(builder.shl(w, _const(8)), builder.zext(builder.load(builder.gep(src_row, [at])),
                                                                            _I64))
                builder.store(w, window)
                states = builder.and_(builder.lshr(_splat8(builder, _LONGS, w), shifts), mask)
                pointers = builder.inttoptr(builder.add(base, builder.shl(states, ir.Constant(_LONGS, [2] * 8))),
                                            ir.VectorType(_F32.as_pointer(), 8))
                values = builder.call(gather, [pointers, ir.Constant(_I32, 4),
                                               ir.Constant(ir.VectorType(ir.IntType(1), 8), [1] * 8),
                                               ir.Constant(_EIGHT, ir.Undefined)])
                target = builder.gep(dst_row, [builder.mul(loop.index, _const(8))])
                builder.store(builder.fmul(values, scale), builder.bitcast(target, _EIGHT.as_pointer()), align=4)

        rows.loop(row)
        return context.get_dummy_value()

    return sig, codegen
