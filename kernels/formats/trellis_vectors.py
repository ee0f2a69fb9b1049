"""One Viterbi step of the bitshift trellis in explicit <16 x float> operations, for trellis_numba.

A step gives each state s = u * 2^k + b the cost minima[u] + (x - table[s])^2, where minima[u] is
the cheapest predecessor of the states of overlap u (the L-k bits a state shares with its
predecessors), then takes for each overlap of the next step the cheapest of its 2^k predecessors
u + j * 2^(L-k) (the first on ties). The 2^L costs are never stored: each chunk of 16 is made in
registers, from a constant shuffle of the minima and a chunk of the table, and compared at once
(the loop over the states is unrolled: L and k are compile-time constants). The arithmetic is
numpy's, in its order and without FMA contraction, so the paths are the reference's bit for bit.

No back pointers are kept (the traceback of trellis_numba._search recomputes the few it needs).
A step of L = 9, k = 3 on a 2-core Xeon took 260 ns as plain loops and 67 ns as a vector minimum
pass tracking the minima's indices followed by a stored cost pass. On a 2-core EPYC (AVX2) the
tail-biting search of 384 groups took 3.9-4.5 ms in that form and 2.5 ms in this one (52 ns a step,
traceback included; the step alone about 35 ns, near the two add ports' 64 adds and subtracts per
512 states). On an AVX-512 Xeon (Sapphire Rapids class) the step alone takes 21 ns, about 80
cycles: its bound, as the 32 chunks' 160 vector operations share the two 512-bit ports.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

LANES = 16
MAX_STATES = 1 << 12  # the unrolled state loop: 2^L / 16 chunks of code
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


def _vector(builder, ptr, index, vector_type=_FLOATS):
    return builder.bitcast(builder.gep(ptr, [ir.Constant(_I64, index)]), vector_type.as_pointer())


@intrinsic
def viterbi_step(typingctx, history, table, x, t, L, k):
    """Row t + 1 of history [T, P] from row t (P = 2^(L-k)): with the costs
    cost[s] = history[t, s >> k] + (x - table[s])^2 of the 2^L states, history[t + 1, u] <- the least
    of cost[u + j * P] over the 2^k j (the first on ties). history: C-contiguous float32 [T, P];
    table: of 2^L; L and k compile-time constants with P a multiple of 16."""
    for name, a, ndim in (("history", history, 2), ("table", table, 1)):
        if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C" and a.ndim == ndim):
            raise TypingError(f"viterbi_step: {name} must be a C-contiguous {ndim}-d float32 array, not {a}")
    if not (isinstance(L, types.IntegerLiteral) and isinstance(k, types.IntegerLiteral)):
        raise TypingError(f"viterbi_step: L and k must be compile-time constants, not {L}, {k}")
    n_states, branches = 1 << L.literal_value, 1 << k.literal_value
    overlaps = n_states // branches
    if overlaps % LANES or n_states > MAX_STATES:
        raise TypingError(f"viterbi_step: 2^(L-k) = {overlaps} must be a multiple of {LANES} and 2^L at most "
                          f"{MAX_STATES}")
    sig = types.void(history, table, types.float32, types.int64, L, k)
    shift = k.literal_value

    def codegen(context, builder, signature, args):
        row = builder.gep(_data(context, builder, signature.args[0], args[0]),
                          [builder.mul(args[3], ir.Constant(_I64, overlaps))])
        table_ptr = _data(context, builder, signature.args[1], args[1])
        ints = ir.VectorType(_I32, LANES)
        minima = [builder.load(_vector(builder, row, c * LANES), align=4) for c in range(overlaps // LANES)]
        xs = builder.shuffle_vector(builder.insert_element(ir.Constant(_FLOATS, ir.Undefined), args[2],
                                                           ir.Constant(_I32, 0)),
                                    ir.Constant(_FLOATS, ir.Undefined), ir.Constant(ints, [0] * LANES))
        for c in range(overlaps // LANES):
            low = None
            for j in range(branches):
                first = j * overlaps + c * LANES  # the 16 states u + j * P of this chunk's overlaps u
                sources = [(first + lane) >> shift for lane in range(LANES)]  # all in one vector of minima
                source = minima[sources[0] // LANES]
                spread = builder.shuffle_vector(source, source, ir.Constant(ints, [u % LANES for u in sources]))
                d = builder.fsub(xs, builder.load(_vector(builder, table_ptr, first), align=4))
                candidate = builder.fadd(spread, builder.fmul(d, d))
                low = candidate if low is None else builder.select(builder.fcmp_ordered("<", candidate, low),
                                                                   candidate, low)
            builder.store(low, _vector(builder, row, overlaps + c * LANES), align=4)
        return context.get_dummy_value()

    return sig, codegen
