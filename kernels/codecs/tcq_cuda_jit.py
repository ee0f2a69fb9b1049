"""numba-cuda JIT code of the TCQ decode (imported lazily by codecs/tcq_cuda.py, so that registering the
variants never imports numba.cuda). `cuda` must be this module's global: the simulator
(NUMBA_ENABLE_CUDASIM=1) swaps it for its fake module inside kernels.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from quantbench.kernels.common.numba_f16 import f16_bits_to_f32_py
from quantbench.kernels.formats import trellis

f16_to_f32 = cuda.jit(device=True, inline=True)(f16_bits_to_f32_py)


@cuda.jit(device=True, inline=True)
def state_of(codes, group, t, T, k, L):
    """State of value t of a group: symbols t, t-1, ... (circularly) shifted into L bits."""
    state = 0
    for back in range((L + k - 1) // k):
        p = k * ((t - back + T) % T)
        byte = p >> 3
        word = np.int32(codes[group, byte]) << 8
        if byte + 1 < codes.shape[1]:
            word |= codes[group, byte + 1]
        state |= ((word >> (16 - (p & 7) - k)) & ((1 << k) - 1)) << (k * back)
    return state & ((1 << L) - 1)


@cuda.jit(device=True, inline=True)
def butterflies_and_store(buf, t, g, scale, signs, out, group):
    h = 1
    while h < g:
        cuda.syncthreads()
        if (t & h) == 0:
            a = buf[t]
            b = buf[t + h]
            buf[t] = a + b
            buf[t + h] = a - b
        h *= 2
    cuda.syncthreads()
    out[group, t] = buf[t] * scale * signs[t]


@functools.lru_cache(maxsize=None)
def make_kernel(placement: str, k: int, L: int, g: int, rotate: bool, levels_key: bytes):
    """A decode kernel for one (placement, trellis, group size); the table (levels_key: its bytes)
    is a compile-time constant for the const and shared placements."""
    LEVELS = np.frombuffer(levels_key, dtype=np.float32)
    S = 1 << L
    SQRT_G = math.sqrt(g)
    HASH_MUL1, HASH_ADD, HASH_MUL2 = trellis.HASH_CONSTANTS
    BYTE_MEAN, BYTE_STD = np.float32(trellis.BYTE_SUM_MEAN), np.float32(trellis.BYTE_SUM_STD)

    @cuda.jit(device=True, inline=True)
    def hashed_level(state):
        low32, byte = np.uint64(0xFFFFFFFF), np.uint64(255)
        h = (np.uint64(state) * np.uint64(HASH_MUL1) + np.uint64(HASH_ADD)) & low32
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(HASH_MUL2)) & low32
        h ^= h >> np.uint64(13)
        total = (h & byte) + ((h >> np.uint64(8)) & byte) + ((h >> np.uint64(16)) & byte) + (h >> np.uint64(24))
        value = (np.float32(total) - BYTE_MEAN) / BYTE_STD
        return np.float32(np.float64(value) / SQRT_G)

    @cuda.jit(device=True, inline=True)
    def finish(buf, t, scale, signs, out, group):
        if rotate:
            butterflies_and_store(buf, t, g, scale, signs, out, group)
        else:
            out[group, t] = buf[t] * signs[t]

    if placement == "const":
        @cuda.jit
        def kernel(codes, norm_bits, signs, scale, out):
            table = cuda.const.array_like(LEVELS)
            buf = cuda.shared.array(g, np.float32)
            group, t = cuda.blockIdx.x, cuda.threadIdx.x
            buf[t] = table[state_of(codes, group, t, g, k, L)] * f16_to_f32(norm_bits[group])
            finish(buf, t, scale, signs, out, group)
    elif placement == "shared":
        @cuda.jit
        def kernel(codes, norm_bits, signs, scale, out, levels):
            table = cuda.shared.array(S, np.float32)
            buf = cuda.shared.array(g, np.float32)
            group, t = cuda.blockIdx.x, cuda.threadIdx.x
            for i in range(t, S, g):
                table[i] = levels[i]
            cuda.syncthreads()
            buf[t] = table[state_of(codes, group, t, g, k, L)] * f16_to_f32(norm_bits[group])
            finish(buf, t, scale, signs, out, group)
    else:
        @cuda.jit
        def kernel(codes, norm_bits, signs, scale, out):
            buf = cuda.shared.array(g, np.float32)
            group, t = cuda.blockIdx.x, cuda.threadIdx.x
            buf[t] = hashed_level(state_of(codes, group, t, g, k, L)) * f16_to_f32(norm_bits[group])
            finish(buf, t, scale, signs, out, group)

    return kernel
