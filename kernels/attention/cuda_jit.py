"""numba-cuda JIT code of the native split-K attention decode for the rotated codebook formats
(turbo2/turbo3 bit planes, turbo2_tcq/turbo3_tcq trellis streams), one kernel per placement of
the codebook (imported lazily by attention/cuda.py; `cuda` must be this module's global, see
codecs/tcq_cuda_jit.py).

Block (p, s) serves the M query rows of (batch, kv head) p over split s of the context, THREADS
threads, THREADS keys per tile:
  1. thread j decodes key j of the tile column by column and scores it against the M rotated
     query rows (in shared memory);
  2. thread m < M folds the tile's scores into its row's online softmax (running max, sum) and
     turns them into weights;
  3. thread c owns output columns c, c + THREADS, ...: it decodes value column c of each key of
     the tile and accumulates weight x value for all M rows in registers.
The codebook lookups of steps 1 and 3 go to constant memory, shared memory, or registers:
  const      cuda.const.array_like of the level table (baked into the kernel)
  shared     the table copied into shared memory by each block
  registers  turbo: the 4 / 8 levels as immediates, picked by the code's bits (a select tree);
             tcq: the level computed from the state (code=hash only)
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from quantbench.kernels.codecs.tcq_cuda_jit import f16_to_f32, state_of
from quantbench.kernels.formats import trellis

NEG_INF = np.float32(-np.inf)


def _select_tree(levels: np.ndarray):
    """Device function: level of a 2- or 3-bit code from immediates, no memory access."""
    c = [np.float32(x) for x in levels]
    if len(c) == 4:
        c0, c1, c2, c3 = c

        @cuda.jit(device=True, inline=True)
        def select(table, code):
            low = c1 if code & 1 else c0
            high = c3 if code & 1 else c2
            return high if code & 2 else low
        return select
    c0, c1, c2, c3, c4, c5, c6, c7 = c

    @cuda.jit(device=True, inline=True)
    def select(table, code):
        odd = code & 1
        a = (c1 if odd else c0) if (code & 2) == 0 else (c3 if odd else c2)
        b = (c5 if odd else c4) if (code & 2) == 0 else (c7 if odd else c6)
        return b if code & 4 else a
    return select


def _hash_level(g: int):
    mul1, add, mul2 = trellis.HASH_CONSTANTS
    mean, std = np.float32(trellis.BYTE_SUM_MEAN), np.float32(trellis.BYTE_SUM_STD)
    sqrt_g = math.sqrt(g)

    @cuda.jit(device=True, inline=True)
    def hashed(table, state):
        low32, byte = np.uint64(0xFFFFFFFF), np.uint64(255)
        h = (np.uint64(state) * np.uint64(mul1) + np.uint64(add)) & low32
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(mul2)) & low32
        h ^= h >> np.uint64(13)
        total = (h & byte) + ((h >> np.uint64(8)) & byte) + ((h >> np.uint64(16)) & byte) + (h >> np.uint64(24))
        value = (np.float32(total) - mean) / std
        return np.float32(np.float64(value) / sqrt_g)
    return hashed


@cuda.jit(device=True, inline=True)
def table_lookup(table, index):
    return table[index]


@functools.lru_cache(maxsize=None)
def make_kernel(family: str, placement: str, bits: int, L: int, M: int, D: int, g: int, threads: int,
                levels_key: bytes):
    """A kernel for one (format family, placement, code, query rows M, head dim D, group g);
    levels_key: the level table's float32 bytes (compile-time constant for const and shared)."""
    LEVELS = np.frombuffer(levels_key, dtype=np.float32)
    S = LEVELS.shape[0]
    G = D // g
    CPT = -(-D // threads)  # output columns per thread
    GROUP_BYTES = bits * g // 8  # turbo: bit planes of one group
    PLANE = g // 8
    if placement != "registers":
        lookup = table_lookup
    elif family == "codebook":
        lookup = _select_tree(LEVELS)
    else:
        lookup = _hash_level(g)

    if family == "codebook":
        @cuda.jit(device=True, inline=True)
        def value(table, codes, norm_bits, row, c):
            gi = c // g
            i = c % g
            at = gi * GROUP_BYTES + (i >> 3)
            code = 0
            for b in range(bits):
                code |= ((np.int32(codes[row, at + b * PLANE]) >> (i & 7)) & 1) << b
            return lookup(table, code) * f16_to_f32(norm_bits[row, gi])
    else:
        @cuda.jit(device=True, inline=True)
        def value(table, codes, norm_bits, row, c):
            gi = c // g
            state = state_of(codes, row * G + gi, c % g, g, bits, L)
            return lookup(table, state) * f16_to_f32(norm_bits[row, gi])

    @cuda.jit(device=True, inline=True)
    def attend(table, q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs):
        qs = cuda.shared.array((M, D), np.float32)
        weights = cuda.shared.array((M, threads), np.float32)
        run_max = cuda.shared.array(M, np.float32)
        run_sum = cuda.shared.array(M, np.float32)
        rescale = cuda.shared.array(M, np.float32)
        score = cuda.local.array(M, np.float32)
        acc = cuda.local.array((M, CPT), np.float32)
        p, split, tid = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
        for idx in range(tid, M * D, threads):
            qs[idx // D, idx % D] = q[p, idx // D, idx % D]
        if tid < M:
            run_max[tid] = NEG_INF
            run_sum[tid] = 0.0
        for m in range(M):
            for r in range(CPT):
                acc[m, r] = 0.0
        start = split * chunk
        # no min()/max() in this kernel: numba 0.68's CUDA target cannot compile their *args overload
        end = start + chunk if start + chunk < ctx else ctx
        cuda.syncthreads()
        for t0 in range(start, end, threads):
            t = t0 + tid
            for m in range(M):
                score[m] = 0.0
            if t < end:
                row = t * programs + p
                for c in range(D):
                    kv = value(table, kc, kn, row, c)
                    for m in range(M):
                        score[m] += qs[m, c] * kv
            for m in range(M):
                weights[m, tid] = score[m] if t < end and t <= limit[m] else NEG_INF
            cuda.syncthreads()
            if tid < M:
                top = run_max[tid]
                for j in range(threads):
                    w = weights[tid, j]
                    top = w if w > top else top
                ref = np.float32(0.0) if top == NEG_INF else top
                total = np.float32(0.0)
                for j in range(threads):
                    w = math.exp(weights[tid, j] - ref)
                    weights[tid, j] = w
                    total += w
                alpha = math.exp(run_max[tid] - ref)
                run_sum[tid] = run_sum[tid] * alpha + total
                run_max[tid] = top
                rescale[tid] = alpha
            cuda.syncthreads()
            keys = threads if threads < end - t0 else end - t0
            for r in range(CPT):
                c = tid + r * threads
                if c < D:
                    for m in range(M):
                        acc[m, r] *= rescale[m]
                    for j in range(keys):
                        vv = value(table, vc, vn, (t0 + j) * programs + p, c)
                        for m in range(M):
                            acc[m, r] += weights[m, j] * vv
            cuda.syncthreads()
        if tid < M:
            m_out[p, split, tid] = run_max[tid]
            l_out[p, split, tid] = run_sum[tid]
        for r in range(CPT):
            c = tid + r * threads
            if c < D:
                for m in range(M):
                    acc_out[p, split, m, c] = acc[m, r]

    if placement == "const":
        @cuda.jit
        def kernel(q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs):
            table = cuda.const.array_like(LEVELS)
            attend(table, q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs)
    elif placement == "shared":
        @cuda.jit
        def kernel(q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs, levels):
            table = cuda.shared.array(S, np.float32)
            for i in range(cuda.threadIdx.x, S, threads):
                table[i] = levels[i]
            cuda.syncthreads()
            attend(table, q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs)
    else:
        @cuda.jit
        def kernel(q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs):
            # no table: `limit` only fills the argument the register lookups ignore
            attend(limit, q, limit, kc, kn, vc, vn, m_out, l_out, acc_out, ctx, chunk, programs)
    return kernel
