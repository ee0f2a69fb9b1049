"""Numba CPU FWHT of one row in vector registers (`unrotate_row`), and the `fwht` variant built on it.

fwht_lanes (numba.py) transforms 32 rows at a time down the columns of a [g, 32] buffer: every
butterfly is a SIMD operation, but the rows go in and out through transposes, one scalar load and
store per value. A decoder that has just written a row (the rotated formats' dequantize) can instead
keep it in registers: a row of 64 values is four <16 x float> vectors, the stages h >= 16 add and
subtract whole vectors, and the stages h < 16 pair each lane with lane i ^ h of its own vector (one
shuffle), adding it to the lane's value negated where bit h of i is set: b + a or a + (-b), which is
a + b and a - b exactly. The stages run in the order of kernels/formats/rotation.py, then the
multiply by scale and by the signs, so the float32 results equal the torch reference bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from quantbench.kernels.formats.base import FormatError
from quantbench.kernels.formats.rotation import is_power_of_two
from quantbench.kernels.registry import Unavailable, variant

LANES = 16
MAX_WIDTH = 256  # 16 vectors: with the signs and constants, within AVX-512's 32 registers
ROWS_PER_TASK = 64
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)


def _vector_ptr(builder, ptr, index):
    return builder.bitcast(builder.gep(ptr, [ir.Constant(_I64, index)]), _FLOATS.as_pointer())


def _butterflies(builder, v, n, scale_value):
    """scale * FWHT of the n vectors v (one row), in the reference's stage order."""
    h = 1
    while h < LANES:
        partner = ir.Constant(ir.VectorType(_I32, LANES), [i ^ h for i in range(LANES)])
        flip = ir.Constant(_FLOATS, [-1.0 if i & h else 1.0 for i in range(LANES)])
        v = [builder.fadd(builder.shuffle_vector(x, x, partner), builder.fmul(x, flip)) for x in v]
        h *= 2
    v = list(v)
    while h < LANES * n:
        step = h // LANES
        for c in range(n):
            if c & step == 0:
                a, b = v[c], v[c + step]
                v[c], v[c + step] = builder.fadd(a, b), builder.fsub(a, b)
        h *= 2
    scale = builder.shuffle_vector(
        builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), scale_value, ir.Constant(_I32, 0)),
        ir.Constant(_FLOATS, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))
    return [builder.fmul(x, scale) for x in v]


@intrinsic
def unrotate_row(typingctx, row, offset, width, scale, signs, rotate):
    """In place on row[offset:offset + width] (float32, C-contiguous): y <- signs * (scale * FWHT(y))
    where rotate, y <- signs * y where not (the rotated formats' inverse rotation). width (16 to
    MAX_WIDTH, a power of two) must be a compile-time constant (see unrotate); signs: float32 [width]."""
    for name, a in (("row", row), ("signs", signs)):
        if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
            raise TypingError(f"unrotate_row: {name} must be a C-contiguous float32 array, not {a}")
    if not (isinstance(width, types.IntegerLiteral) and LANES <= width.literal_value <= MAX_WIDTH
            and is_power_of_two(width.literal_value)):
        raise TypingError(f"unrotate_row: width must be a constant power of two from {LANES} to {MAX_WIDTH}, "
                          f"not {width}")
    n = width.literal_value // LANES
    sig = types.void(row, types.int64, width, types.float32, signs, types.boolean)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        base = builder.gep(data, [args[1]])
        sign_ptr = context.make_array(signature.args[4])(context, builder, args[4]).data
        ptrs = [_vector_ptr(builder, base, LANES * c) for c in range(n)]
        loaded = [builder.load(p, align=4) for p in ptrs]
        with builder.if_else(args[5]) as (rotated, plain):
            with rotated:
                transformed = _butterflies(builder, loaded, n, args[3])
                rotated_end = builder.block
            with plain:
                plain_end = builder.block
        v = []
        for c in range(n):
            phi = builder.phi(_FLOATS)
            phi.add_incoming(transformed[c], rotated_end)
            phi.add_incoming(loaded[c], plain_end)
            v.append(phi)
        for c in range(n):
            builder.store(builder.fmul(v[c], builder.load(_vector_ptr(builder, sign_ptr, LANES * c), align=4)),
                          ptrs[c], align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def unrotate(row, offset, width, scale, signs, rotate):
    """unrotate_row for a width known only at run time (16 to MAX_WIDTH, a power of two); False
    for another width, where nothing is done."""
    if width == 64:
        unrotate_row(row, offset, 64, scale, signs, rotate)
    elif width == 128:
        unrotate_row(row, offset, 128, scale, signs, rotate)
    elif width == 32:
        unrotate_row(row, offset, 32, scale, signs, rotate)
    elif width == 256:
        unrotate_row(row, offset, 256, scale, signs, rotate)
    elif width == 16:
        unrotate_row(row, offset, 16, scale, signs, rotate)
    else:
        return False
    return True


@njit(parallel=True, cache=True)
def fwht_rows_in_registers(x, width, out):
    """out [rows, width] = the orthonormal FWHT of each row of x (width a constant: see unrotate_row)."""
    rows = x.shape[0]
    scale = np.float32(1.0 / np.sqrt(width))
    ones = np.ones(width, np.float32)
    for task in prange((rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        for r in range(task * ROWS_PER_TASK, min(rows, (task + 1) * ROWS_PER_TASK)):
            for i in range(width):  # a loop: numba's slice assignment costs about a microsecond
                out[r, i] = x[r, i]
            unrotate(out, r * width, width, scale, ones, True)
    return out


@variant("fwht", backend="numba", name="registers", needs=("numba",))
def fwht_numba_registers(case):
    """a row at a time in vector registers (unrotate_row), prange over row blocks"""
    x = case.inputs()["x"].to(torch.float32).contiguous()
    g = x.shape[-1]
    if not is_power_of_two(g):
        raise FormatError(f"fwht: last dimension {g} is not a power of two")
    if not LANES <= g <= MAX_WIDTH:
        raise Unavailable(f"fwht/numba/registers: a row of {g} values is not {LANES} to {MAX_WIDTH} (vector registers)")
    src = x.reshape(-1, g).numpy()
    out = np.empty_like(src)
    return lambda: torch.from_numpy(fwht_rows_in_registers(src, g, out)).reshape(x.shape).to(case.torch_dtype)
