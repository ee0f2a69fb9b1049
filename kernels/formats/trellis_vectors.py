"""One Viterbi step of the bitshift trellis in explicit <16 x float> operations, for trellis_numba.

A step takes, for each overlap u (the L-k bits a state shares with its predecessors), the cheapest
of its 2^k predecessors u + j * 2^(L-k) (the first on ties), then gives each state s = u * 2^k + b
the cost best[s >> k] + (x - table[s])^2. As plain loops LLVM vectorized the first part, but the
second reads best[s >> k] through a gather-like index and the level loads may alias the cost
stores: a step of L = 9, k = 3 took 260 ns on a 2-core Xeon (the tail-biting search of one
token's three K groups, 101 us), 67 ns so (26 us). Here the minima stay in registers, every
state's best is a constant shuffle of them (the loop over the 2^L states is unrolled: L and k are
compile-time constants), and the arithmetic is numpy's, in its order and without FMA contraction,
so the paths are the reference's bit for bit.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

LANES = 16
MAX_STATES = 1 << 12  # the unrolled state loop: 2^L / 16 chunks of code
_F32 = ir.FloatType()
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


def _vector(builder, ptr, index, vector_type=_FLOATS):
    return builder.bitcast(builder.gep(ptr, [ir.Constant(_I64, index)]), vector_type.as_pointer())


@intrinsic
def viterbi_step(typingctx, cost, table, x, back, t, L, k):
    """cost[s] <- min_j cost[(s >> k) + j * P] + (x - table[s])^2 for the 2^L states s (P = 2^(L-k)),
    back[t, u] <- the j of overlap u's minimum. cost and table: C-contiguous float32 of 2^L; back:
    C-contiguous uint8 [T, P]; L and k compile-time constants with P a multiple of 16."""
    for name, a, dtype in (("cost", cost, types.float32), ("table", table, types.float32), ("back", back, types.uint8)):
        if not (isinstance(a, types.Array) and a.dtype == dtype and a.layout == "C"):
            raise TypingError(f"viterbi_step: {name} must be a C-contiguous {dtype} array, not {a}")
    if not (isinstance(L, types.IntegerLiteral) and isinstance(k, types.IntegerLiteral)):
        raise TypingError(f"viterbi_step: L and k must be compile-time constants, not {L}, {k}")
    n_states, branches = 1 << L.literal_value, 1 << k.literal_value
    overlaps = n_states // branches
    if overlaps % LANES or n_states > MAX_STATES:
        raise TypingError(f"viterbi_step: 2^(L-k) = {overlaps} must be a multiple of {LANES} and 2^L at most "
                          f"{MAX_STATES}")
    sig = types.void(cost, table, types.float32, back, types.int64, L, k)

    def codegen(context, builder, signature, args):
        cost_ptr = _data(context, builder, signature.args[0], args[0])
        table_ptr = _data(context, builder, signature.args[1], args[1])
        back_ptr = builder.gep(_data(context, builder, signature.args[3], args[3]),
                               [builder.mul(args[4], ir.Constant(_I64, overlaps))])
        ints = ir.VectorType(_I32, LANES)
        best = []
        for c in range(overlaps // LANES):
            low = builder.load(_vector(builder, cost_ptr, c * LANES), align=4)
            which = ir.Constant(ints, [0] * LANES)
            for j in range(1, branches):
                candidate = builder.load(_vector(builder, cost_ptr, j * overlaps + c * LANES), align=4)
                take = builder.fcmp_ordered("<", candidate, low)
                low = builder.select(take, candidate, low)
                which = builder.select(take, ir.Constant(ints, [j] * LANES), which)
            best.append(low)
            builder.store(builder.trunc(which, ir.VectorType(_I8, LANES)),
                          _vector(builder, back_ptr, c * LANES, ir.VectorType(_I8, LANES)), align=1)
        xs = builder.shuffle_vector(builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), args[2],
                                                           ir.Constant(_I32, 0)),
                                    ir.Constant(_FLOATS, ir.Undefined), ir.Constant(ints, [0] * LANES))
        for c in range(n_states // LANES):
            overlap = [(c * LANES + lane) // branches for lane in range(LANES)]  # each lane's state >> k
            source = best[overlap[0] // LANES]  # a chunk's overlaps lie in one vector of minima
            spread = builder.shuffle_vector(source, source, ir.Constant(ints, [u % LANES for u in overlap]))
            d = builder.fsub(xs, builder.load(_vector(builder, table_ptr, c * LANES), align=4))
            builder.store(builder.fadd(spread, builder.fmul(d, d)), _vector(builder, cost_ptr, c * LANES), align=4)
        return context.get_dummy_value()

    return sig, codegen
