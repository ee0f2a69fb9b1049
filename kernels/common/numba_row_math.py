"""Explicit-SIMD arithmetic on tiles of float32 rows for numba kernels, in <16 x float> operations.

The attention kernels score a query against a tile of decoded key rows and add a tile of value
rows, weighted, into an accumulator. As plain loops, a row's dot product of 64 values is four
FMAs and then a horizontal sum of ten shuffles and adds, and LLVM compiles them for a runtime
trip count: 8-lane ymm bodies on Intel (its tuning prefers 256-bit vectors there), alias checks,
scalar epilogues. These take tiles of rows and up to MAX_QUERIES queries at a time instead:

- tile_dots keeps one partial-sum vector per row and query, then sums them across their lanes
  together (a transpose-and-add tree: 4 levels, 15 adds and 30 shuffles for 16 sums, against
  16 horizontal sums of 8 steps each);
- tile_axpy keeps the accumulators' chunks in registers over the 16 rows and writes them once,
  where a per-row update loads and stores them for every row.

tile_dots_n and tile_axpy_n take a query count known only at run time (the kernels' Q is a
runtime value; the intrinsics need a constant to hold their sums in registers). Both load each
chunk of a row once for all their queries: the kernels had been bounded by those loads (one per
FMA), not by the FMAs. LLVM lowers the vectors to zmm where there is AVX-512. A tile is DOT_ROWS
(tile_dots) or ROWS (tile_axpy) rows of `width` values, consecutive in a C-contiguous float32 array
from a flat element offset; width must be a multiple of 16 (every native row width is: block
formats hold 32 values a block, turbo rows 16 a bit-plane word). Offsets and widths are not
bounds-checked: the callers compute them from their arrays' shapes.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

LANES = 16
ROWS = 16  # rows of a tile_axpy
DOT_ROWS = 8  # rows of a tile_dots: its 8 x 3 sums stay in the 32 vector registers
MAX_QUERIES = 3
BLOCK_CHUNKS = 4  # chunks of 16 values tile_axpy keeps in registers for every query
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
    """The vector whose lane t is the sum of vectors[t]'s lanes, for 16 vectors; for 8, an
    <8 x float> of their sums. Each level adds the two halves of every item (a run of lanes holding
    one vector's partial sums) of two vectors into one, items of the first and second alternating;
    pairing t with t + half puts the sums in lane order. Eight vectors end in one vector of eight
    2-lane items, whose pairs a last shuffle adds."""
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
    if size == 1:
        return items[0]
    v = items[0]
    evens, odds = (ir.Constant(ir.VectorType(_I32, LANES // 2), list(range(o, LANES, 2))) for o in (0, 1))
    return builder.fadd(builder.shuffle_vector(v, v, evens), builder.shuffle_vector(v, v, odds))


def _check_count(name, count, largest):
    if not (isinstance(count, types.IntegerLiteral) and 1 <= count.literal_value <= largest):
        raise TypingError(f"{name}: the query count must be a constant 1..{largest}, not {count}")
    return count.literal_value


def _store8(builder, values, ptr):
    builder.store(values, builder.bitcast(ptr, ir.VectorType(_F32, LANES // 2).as_pointer()), align=4)


@intrinsic
def tile_dots(typingctx, q, q_off, q_stride, nq, tile, tile_off, width, out, out_off, out_stride):
    """out[out_off + j * out_stride + t] = sum(q[q_off + j * q_stride + i] * tile[tile_off + t * width + i]
    for i < width), for the DOT_ROWS = 8 rows t and the nq (a constant 1..3) queries j. Each chunk of
    a row is loaded once for all nq queries: with a call per query the loads of the tile, one per
    FMA, bounded the kernel (an FMA with a load from memory ran at 1.3 a cycle on the Xeon, against
    2 without). The sums of two queries share one 16-vector lane-sum tree; an odd one takes an
    8-vector tree."""
    _check_rows(q, tile, out)
    queries = _check_count("tile_dots", nq, MAX_QUERIES)
    sig = types.void(q, types.int64, types.int64, nq, tile, types.int64, types.int64, out, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arrays = _Arrays(context, builder, signature, args)
        _, qo, qs, _, _, to, w, _, oo, os_ = args
        fma = _fma(builder)
        zeros = ir.Constant(_FLOATS, [0.0] * LANES)
        sums = [[cgutils.alloca_once_value(builder, zeros) for _ in range(DOT_ROWS)] for _ in range(queries)]
        with cgutils.for_range(builder, builder.udiv(w, _const(LANES))) as loop:
            lane = builder.mul(loop.index, _const(LANES))
            qv = [arrays.load(0, builder.add(builder.add(qo, builder.mul(qs, _const(j))), lane))
                  for j in range(queries)]
            for t in range(DOT_ROWS):
                row = arrays.load(4, builder.add(builder.add(to, builder.mul(w, _const(t))), lane))
                for j in range(queries):
                    builder.store(builder.call(fma, [qv[j], row, builder.load(sums[j][t])]), sums[j][t])
        rows = [[builder.load(s) for s in per_query] for per_query in sums]

        def out_ptr(j):
            return arrays.ptr(7, builder.add(oo, builder.mul(os_, _const(j))), vector=False)

        for j in range(0, queries - 1, 2):
            both = _lane_sums(builder, rows[j] + rows[j + 1])
            for which in range(2):
                lanes = ir.Constant(ir.VectorType(_I32, LANES // 2), list(range(which * 8, which * 8 + 8)))
                _store8(builder, builder.shuffle_vector(both, both, lanes), out_ptr(j + which))
        if queries % 2:
            _store8(builder, _lane_sums(builder, rows[-1]), out_ptr(queries - 1))
        return context.get_dummy_value()

    return sig, codegen


def _axpy_block(builder, arrays, fma, queries, chunks, ao, as_, po, ps, to, w, first_lane):
    """acc chunks first_lane/16 .. + chunks of the nq queries, over the 16 rows: the sums stay in
    registers; with fewer than 4 of them, each is split into partial sums (independent FMA chains)."""
    chains = max(1, 4 // (queries * chunks))
    def acc_at(j, c):
        return builder.add(builder.add(ao, builder.mul(as_, _const(j))), builder.add(first_lane, _const(c * LANES)))
    zeros = ir.Constant(_FLOATS, [0.0] * LANES)
    partial = [[[arrays.load(0, acc_at(j, c))] + [zeros] * (chains - 1) for c in range(chunks)]
               for j in range(queries)]
    for t in range(ROWS):
        weights = [_splat(builder, builder.load(arrays.ptr(4, builder.add(builder.add(po, builder.mul(ps, _const(j))),
                                                                         _const(t)), vector=False)))
                   for j in range(queries)]
        for c in range(chunks):
            row = arrays.load(7, builder.add(builder.add(to, builder.mul(w, _const(t))),
                                             builder.add(first_lane, _const(c * LANES))))
            for j in range(queries):
                partial[j][c][t % chains] = builder.call(fma, [weights[j], row, partial[j][c][t % chains]])
    for j in range(queries):
        for c in range(chunks):
            total = partial[j][c][0]
            for extra in partial[j][c][1:]:
                total = builder.fadd(total, extra)
            arrays.store(total, 0, acc_at(j, c))


@intrinsic
def tile_axpy(typingctx, acc, acc_off, acc_stride, nq, p, p_off, p_stride, tile, tile_off, width):
    """acc[acc_off + j * acc_stride + i] += sum(p[p_off + j * p_stride + t] * tile[tile_off + t * width + i]
    for t < 16), i < width, for the nq (a constant 1..3) queries j. The accumulators of up to 4 chunks
    of every query stay in registers over the 16 rows, and each row chunk is loaded once for the nq
    queries (see tile_dots)."""
    _check_rows(acc, p, tile)
    queries = _check_count("tile_axpy", nq, MAX_QUERIES)
    sig = types.void(acc, types.int64, types.int64, nq, p, types.int64, types.int64, tile, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arrays = _Arrays(context, builder, signature, args)
        _, ao, as_, _, _, po, ps, _, to, w = args
        fma = _fma(builder)
        chunks = builder.udiv(w, _const(LANES))
        group = BLOCK_CHUNKS
        with cgutils.for_range(builder, builder.udiv(chunks, _const(group))) as loop:
            _axpy_block(builder, arrays, fma, queries, group, ao, as_, po, ps, to, w,
                        builder.mul(loop.index, _const(group * LANES)))
        done = builder.mul(builder.udiv(chunks, _const(group)), _const(group))
        with cgutils.for_range(builder, builder.sub(chunks, done)) as loop:
            _axpy_block(builder, arrays, fma, queries, 1, ao, as_, po, ps, to, w,
                        builder.mul(builder.add(done, loop.index), _const(LANES)))
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


@njit(cache=True, inline="always")
def tile_dots_n(q, q_off, q_stride, nq, tile, tile_off, width, out, out_off, out_stride):
    """tile_dots for a query count nq (1..MAX_QUERIES) known only at run time."""
    if nq == 3:
        tile_dots(q, q_off, q_stride, 3, tile, tile_off, width, out, out_off, out_stride)
    elif nq == 2:
        tile_dots(q, q_off, q_stride, 2, tile, tile_off, width, out, out_off, out_stride)
    else:
        tile_dots(q, q_off, q_stride, 1, tile, tile_off, width, out, out_off, out_stride)


@njit(cache=True, inline="always")
def tile_axpy_n(acc, acc_off, acc_stride, nq, p, p_off, p_stride, tile, tile_off, width):
    """tile_axpy for a query count nq (1..MAX_QUERIES) known only at run time."""
    if nq == 3:
        tile_axpy(acc, acc_off, acc_stride, 3, p, p_off, p_stride, tile, tile_off, width)
    elif nq == 2:
        tile_axpy(acc, acc_off, acc_stride, 2, p, p_off, p_stride, tile, tile_off, width)
    else:
        tile_axpy(acc, acc_off, acc_stride, 1, p, p_off, p_stride, tile, tile_off, width)
