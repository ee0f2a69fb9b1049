"""Explicit-SIMD arithmetic on tiles of float32 rows for numba kernels, in <16 x float> operations.

The attention kernels score a query against a tile of decoded key rows and add a tile of value
rows, weighted, into an accumulator. As plain loops, a row's dot product of 64 values is four
FMAs and then a horizontal sum of ten shuffles and adds, and LLVM compiles them for a runtime
trip count: 8-lane ymm bodies on Intel (its tuning prefers 256-bit vectors there), alias checks,
scalar epilogues. These take 16 rows at a time instead:

- tile_dots keeps one partial-sum vector per row, then sums the 16 vectors across their lanes
  together (a transpose-and-add tree: 4 levels, 15 adds and 30 shuffles for 16 sums, against
  16 horizontal sums of 8 steps each);
- tile_axpy keeps the accumulator's chunk in registers over the 16 rows (4 independent FMA
  chains) and writes it once, where a per-row update loads and stores it for every row.

LLVM lowers the vectors to zmm where there is AVX-512. A tile is 16 rows of `width` values,
consecutive in a C-contiguous float32 array from a flat element offset; width must be a multiple of
16 (every native row width is: block formats hold 32 values a block, turbo rows 16 a bit-plane
word). Offsets and widths are not bounds-checked: the callers compute them from their arrays' shapes.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

LANES = 16
ROWS = 16  # rows of a tile
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)


@njit(cache=True)
def aligned_zeros(n):
    """n float32 zeros starting on a 64-byte line. numba's arrays start 32 bytes into one, and a zmm
    load across two lines costs two: tile_dots took 34 ns on such rows against 25 on aligned ones."""
    buf = np.zeros(n + 16, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip:skip + n]


def _check_rows(*arrays):
    for a in arrays:
        if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
            raise TypingError(f"numba_row_math: rows must be C-contiguous float32 arrays, not {a}")


class _Arrays:
    """Flat float32 pointers of an intrinsic's array arguments, and vector loads and stores through them."""

    def __init__(self, context, builder, signature, args):
        self.builder = builder
        self.data = {i: context.make_array(t)(context, builder, args[i]).data
                     for i, t in enumerate(signature.args) if isinstance(t, types.Array)}

    def ptr(self, arg, offset, vector=True):
        element = self.builder.gep(self.data[arg], [offset])
        return self.builder.bitcast(element, _FLOATS.as_pointer()) if vector else element

    def load(self, arg, offset):
        return self.builder.load(self.ptr(arg, offset), align=4)

    def store(self, value, arg, offset):
        self.builder.store(value, self.ptr(arg, offset), align=4)


def _fma(builder):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 3), "llvm.fma.v16f32")


def _splat(builder, scalar):
    one = builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(_FLOATS, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES),
                                                                                       [0] * LANES))


def _const(value):
    return ir.Constant(_I64, value)


def _lane_sums(builder, vectors):
    """The vector whose lane t is the sum of vectors[t]'s lanes (16 vectors). Each level adds the two
    halves of every item (a run of lanes holding one vector's partial sums) of two vectors into one,
    items of the first and second alternating; pairing t with t + half puts the sums in lane order."""
    items = list(vectors)
    size = LANES
    while len(items) > 1:
        half = len(items) // 2
        h = size // 2
        first, second = [], []
        for m in range(LANES // h):
            segment = (m // 2) * size + (LANES if m % 2 else 0)  # lanes of u, or of w after 16
            first += [segment + o for o in range(h)]
            second += [segment + h + o for o in range(h)]
        items = [builder.fadd(builder.shuffle_vector(u, w, ir.Constant(ir.VectorType(_I32, LANES), first)),
                              builder.shuffle_vector(u, w, ir.Constant(ir.VectorType(_I32, LANES), second)))
                 for u, w in zip(items[:half], items[half:])]
        size = h
    return items[0]


@intrinsic
def tile_dots(typingctx, q, q_off, tile, tile_off, width, out, out_off):
    """out[out_off + t] = sum(q[q_off + i] * tile[tile_off + t * width + i] for i < width), t < 16."""
    _check_rows(q, tile, out)
    sig = types.void(q, types.int64, tile, types.int64, types.int64, out, types.int64)

    def codegen(context, builder, signature, args):
        arrays = _Arrays(context, builder, signature, args)
        _, qo, _, to, w, _, oo = args
        fma = _fma(builder)
        sums = [cgutils.alloca_once_value(builder, ir.Constant(_FLOATS, [0.0] * LANES)) for _ in range(ROWS)]
        with cgutils.for_range(builder, builder.udiv(w, _const(LANES))) as loop:
            lane = builder.mul(loop.index, _const(LANES))
            query = arrays.load(0, builder.add(qo, lane))
            for t in range(ROWS):
                row = arrays.load(2, builder.add(builder.add(to, builder.mul(w, _const(t))), lane))
                builder.store(builder.call(fma, [query, row, builder.load(sums[t])]), sums[t])
        arrays.store(_lane_sums(builder, [builder.load(s) for s in sums]), 5, oo)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def tile_axpy(typingctx, acc, acc_off, p, p_off, tile, tile_off, width):
    """acc[acc_off + i] += sum(p[p_off + t] * tile[tile_off + t * width + i] for t < 16), i < width."""
    _check_rows(acc, p, tile)
    sig = types.void(acc, types.int64, p, types.int64, tile, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arrays = _Arrays(context, builder, signature, args)
        _, ao, _, po, _, to, w = args
        fma = _fma(builder)
        weights = [_splat(builder, builder.load(arrays.ptr(2, builder.add(po, _const(t)), vector=False)))
                   for t in range(ROWS)]
        chains = 4
        with cgutils.for_range(builder, builder.udiv(w, _const(LANES))) as loop:
            lane = builder.mul(loop.index, _const(LANES))
            partial = [arrays.load(0, builder.add(ao, lane))] + [ir.Constant(_FLOATS, [0.0] * LANES)] * (chains - 1)
            for t in range(ROWS):
                row = arrays.load(4, builder.add(builder.add(to, builder.mul(w, _const(t))), lane))
                partial[t % chains] = builder.call(fma, [weights[t], row, partial[t % chains]])
            total = builder.fadd(builder.fadd(partial[0], partial[1]), builder.fadd(partial[2], partial[3]))
            arrays.store(total, 0, builder.add(ao, lane))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def lanes_max(typingctx, x, x_off, n, start):
    """max(start, x[x_off + i] for i < n), n a multiple of 16, for x and start free of NaN. A plain
    loop's max is a chain of scalar maxss: LLVM vectorizes a max only under no-NaN fast math, which
    the kernels do not use (FASTMATH there keeps infinities, the masked scores)."""
    _check_rows(x)
    sig = types.float32(x, types.int64, types.int64, types.float32)

    def codegen(context, builder, signature, args):
        arrays = _Arrays(context, builder, signature, args)
        _, xo, count, first = args
        vmax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_FLOATS, [_FLOATS] * 2),
                                              "llvm.maxnum.v16f32")
        top = cgutils.alloca_once_value(builder, _splat(builder, first))
        with cgutils.for_range(builder, builder.udiv(count, _const(LANES))) as loop:
            values = arrays.load(0, builder.add(xo, builder.mul(loop.index, _const(LANES))))
            builder.store(builder.call(vmax, [builder.load(top), values]), top)
        reduce = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, [_FLOATS]),
                                                "llvm.vector.reduce.fmax.v16f32")
        return builder.call(reduce, [builder.load(top)], fastmath=("nnan",))  # a tree: the lanes hold no NaN

    return sig, codegen
