"""A float32 exp in <16 x float> operations, for the numba attention kernels' softmax.

numba compiles math.exp to a call of libm's expf per value (no SVML here), which cannot be
vectorized: at three queries per KV head that call was a third of the native decode's time.
`exp_shifted` computes e^(x - shift) for runs of 16 scores as vector IR instead (zmm where there
is AVX-512): x - shift = k ln2 + r with |r| <= ln2 / 2, e^r by its degree-7 Taylor polynomial
(truncation error r^8 / 8! < 6e-9, below float32's half ulp), and 2^k by writing the exponent field
k + 127 of a float32. Inputs below UNDERFLOW, -inf (a masked score) included, give exactly 0, as
math.exp's result rounds to. As a plain loop LLVM had compiled it to 8-lane bodies for a runtime
count, in two passes through memory; a tile of 32 scores took about 150 cycles.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693145751953125)  # ln 2 split so that k * LN2_HI is exact for |k| < 2^8
LN2_LO = np.float32(1.428606765330187e-06)
UNDERFLOW = np.float32(-87.0)  # e^-87 = 1.6e-38, the bottom of float32's normal range
LANES = 16
_TAYLOR = [1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]  # 1/k!, 8..0
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)
_INTS = ir.VectorType(_I32, LANES)


def _floats(value):
    return ir.Constant(_FLOATS, [float(np.float32(value))] * LANES)


def _vector_exp(builder, v):
    """e^v per lane for v in [UNDERFLOW, 0] (and a little above: a shift need not be the exact max)."""
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 3), "llvm.fma.v16f32")
    floor = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS]), "llvm.floor.v16f32")
    k = builder.call(floor, [builder.call(fma, [v, _floats(LOG2E), _floats(0.5)])])
    r = builder.call(fma, [builder.fneg(k), _floats(LN2_HI), v])
    r = builder.call(fma, [builder.fneg(k), _floats(LN2_LO), r])
    p = _floats(_TAYLOR[0])
    for c in _TAYLOR[1:]:
        p = builder.call(fma, [r, p, _floats(c)])
    exponent = builder.shl(builder.add(builder.fptosi(k, _INTS), ir.Constant(_INTS, [127] * LANES)),
                           ir.Constant(_INTS, [23] * LANES))
    return builder.fmul(p, builder.bitcast(exponent, _FLOATS))


@intrinsic
def exp_shifted(typingctx, x, at, count, shift, out):
    """out[at + t] = e^(x[at + t] - shift) for t < count, a multiple of 16 (x and out C-contiguous
    float32, flat offsets; out may be x). Returns the sum of out[at:at + count]."""
    for a in (x, out):
        if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
            raise TypingError(f"exp_shifted: x and out must be C-contiguous float32 arrays, not {a}")
    sig = types.float32(x, types.int64, types.int64, types.float32, out)

    def codegen(context, builder, signature, args):
        xv, xo, n, sh, ov = args
        src = context.make_array(signature.args[0])(context, builder, xv).data
        dst = context.make_array(signature.args[4])(context, builder, ov).data
        one = builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), sh, ir.Constant(_I32, 0))
        shift_v = builder.shuffle_vector(one, ir.Constant(_FLOATS, ir.Undefined), ir.Constant(_INTS, [0] * LANES))
        total = cgutils.alloca_once_value(builder, ir.Constant(_FLOATS, [0.0] * LANES))
        with cgutils.for_range(builder, builder.udiv(n, ir.Constant(_I64, LANES))) as loop:
            offset = builder.add(xo, builder.mul(loop.index, ir.Constant(_I64, LANES)))
            ptr_in = builder.bitcast(builder.gep(src, [offset]), _FLOATS.as_pointer())
            v = builder.fsub(builder.load(ptr_in, align=4), shift_v)
            live = builder.fcmp_ordered(">", v, _floats(UNDERFLOW))
            e = builder.select(live, _vector_exp(builder, builder.select(live, v, _floats(UNDERFLOW))), _floats(0.0))
            builder.store(e, builder.bitcast(builder.gep(dst, [offset]), _FLOATS.as_pointer()), align=4)
            builder.store(builder.fadd(builder.load(total), e), total)
        add = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, [_F32, _FLOATS]),
                                             "llvm.vector.reduce.fadd.v16f32")
        return builder.call(add, [ir.Constant(_F32, 0.0), builder.load(total)], fastmath=("reassoc",))

    return sig, codegen
