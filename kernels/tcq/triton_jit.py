"""Triton JIT code of the TCQ encoders (imported lazily by tcq/triton.py, so that registering the
variants never imports triton). See tcq/triton.py for the layout; the float32 operations are those
of the numpy reference in kernels/formats/trellis.py (launch with enable_fp_fusion=False on a GPU).
"""
import triton
import triton.language as tl


@triton.jit
def backtrack(back_ptr, base, s, first, last, KBITS: tl.constexpr, LBITS: tl.constexpr, P: tl.constexpr,
              out_ptr, out_base, STORE: tl.constexpr):
    """Walk back-pointers from state s (after step `last`) down to step `first`; returns the
    state before step `first`. STORE: also write each step's state to out_ptr[out_base + t]."""
    for i in range(last - first + 1):
        t = last - i
        if STORE:
            tl.store(out_ptr + out_base + t, s)
        u = s >> KBITS
        j = tl.load(back_ptr + base + t * P + u).to(tl.int32)
        s = u | (j << (LBITS - KBITS))
    return s


@triton.jit
def viterbi_pass(v_ptr, tab, back_ptr, base, g, cost, T: tl.constexpr, shift, K: tl.constexpr,
                 P: tl.constexpr):
    cols = tl.arange(0, P)
    for t in range(T):
        xt = tl.load(v_ptr + g * T + (t + shift) % T)
        best = tl.min(cost, axis=0)
        arg = tl.argmin(cost, axis=0)
        tl.store(back_ptr + base + t * P + cols, arg.to(tl.int8))
        d = xt - tab
        cost = tl.reshape(best[:, None] + d * d, [K, P])
    return cost


@triton.jit
def viterbi_kernel(v_ptr, table_ptr, back_ptr, out_ptr, T: tl.constexpr, KBITS: tl.constexpr,
                   LBITS: tl.constexpr):
    K: tl.constexpr = 1 << KBITS
    P: tl.constexpr = 1 << (LBITS - KBITS)
    S: tl.constexpr = K * P
    g = tl.program_id(0).to(tl.int64)  # offsets g * T * P can pass 2**31
    base = g * T * P
    tab = tl.load(table_ptr + tl.arange(0, P)[:, None] * K + tl.arange(0, K)[None, :])  # [u, b]
    states = tl.arange(0, K)[:, None] * P + tl.arange(0, P)[None, :]  # [j, u]
    half = T // 2
    # pass 1: free search over the group rotated by half; its state after the group's last value
    cost = viterbi_pass(v_ptr, tab, back_ptr, base, g, tl.zeros([K, P], tl.float32), T, half, K, P)
    tl.debug_barrier()
    s = tl.argmin(tl.reshape(cost, [S]), axis=0).to(tl.int32)
    s = backtrack(back_ptr, base, s, T - half, T - 1, KBITS, LBITS, P, out_ptr, 0, False)
    overlap = s & (P - 1)
    tl.debug_barrier()
    # pass 2: exact search for that overlap
    start = tl.where(states == overlap, 0.0, float("inf")).to(tl.float32)
    cost = viterbi_pass(v_ptr, tab, back_ptr, base, g, start, T, 0, K, P)
    tl.debug_barrier()
    cost = tl.where((states & (P - 1)) == overlap, cost, float("inf"))
    s = tl.argmin(tl.reshape(cost, [S]), axis=0).to(tl.int32)
    backtrack(back_ptr, base, s, 0, T - 1, KBITS, LBITS, P, out_ptr, g * T, True)


@triton.jit
def greedy_kernel(v_ptr, table_ptr, out_ptr, T: tl.constexpr, KBITS: tl.constexpr, LBITS: tl.constexpr):
    K: tl.constexpr = 1 << KBITS
    S: tl.constexpr = 1 << LBITS
    N: tl.constexpr = KBITS * T
    FIRST: tl.constexpr = N - (LBITS - KBITS)  # the stream's last L-k bits are the overlap
    g = tl.program_id(0).to(tl.int64)  # offsets g * T * P can pass 2**31
    # its own name: a loop-carried variable keeps its shape, and the loop's d is [K], this one [S]
    first = tl.load(v_ptr + g * T) - tl.load(table_ptr + tl.arange(0, S))
    s = tl.argmin(first * first, axis=0).to(tl.int32)
    tl.store(out_ptr + g * T, s)
    overlap = s >> KBITS
    b = tl.arange(0, K)
    for t in range(1, T):
        allowed = b >= 0
        for i in tl.static_range(KBITS):
            p = KBITS * t + i
            want = (overlap >> (N - 1 - p)) & 1
            allowed = allowed & ((p < FIRST) | (((b >> (KBITS - 1 - i)) & 1) == want))
        nxt = ((s << KBITS) | b) & (S - 1)
        d = tl.load(v_ptr + g * T + t) - tl.load(table_ptr + nxt)
        err = tl.where(allowed, d * d, float("inf"))
        s = ((s << KBITS) | tl.argmin(err, axis=0).to(tl.int32)) & (S - 1)
        tl.store(out_ptr + g * T + t, s)
