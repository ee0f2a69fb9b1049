"""numba-cuda JIT code of the int8 weight matmuls (imported lazily by matmul/cuda.py). `cuda` must
be this module's global: the simulator (NUMBA_ENABLE_CUDASIM=1) swaps it for its fake module.

Both kernels compute out[r, row] = sum over blocks b of d_w d_a isum_b, isum_b the exact int32 dot
of the q4_0 weight codes (q - 8) with the q8_0 activation codes; one thread per output row,
grid (row tiles, activation rows). They differ in where the weights pass on their way:
  registers  each thread loads its own row's nibble bytes from global memory into registers
             (neighbouring threads read addresses nb*16 bytes apart: uncoalesced)
  shared     the block first copies its TPB rows x CHUNK blocks of nibble bytes and the activation
             chunk into shared memory, consecutive threads reading consecutive bytes (coalesced),
             then each thread reads its row from shared memory.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, int32

from quantbench.kernels.codecs.tcq_cuda_jit import f16_to_f32

TPB = 32  # threads (output rows) per block
CHUNK = 4  # blocks of 32 values staged per round (shared variant)


@cuda.jit
def int8_q4_0_registers(aq, ad, d_bits, qs, out):
    """aq int8 [m, nb * 32]; ad float32 [m, nb]; d_bits int16 [n, nb]; qs uint8 [n, nb * 16]; out [m, n]."""
    row = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = cuda.blockIdx.y
    if row >= out.shape[1]:
        return
    total = np.float32(0.0)
    for b in range(ad.shape[1]):
        isum = int32(0)
        for j in range(16):
            byte = int32(qs[row, b * 16 + j])
            isum += ((byte & 15) - 8) * int32(aq[r, b * 32 + j]) + ((byte >> 4) - 8) * int32(aq[r, b * 32 + j + 16])
        total += np.float32(isum) * (f16_to_f32(d_bits[row, b]) * ad[r, b])
    out[r, row] = total


@cuda.jit
def int8_q4_0_shared(aq, ad, d_bits, qs, out):
    """As int8_q4_0_registers; nb must be a multiple of CHUNK (the factory checks)."""
    weights = cuda.shared.array((TPB, CHUNK * 16), dtype=np.uint8)
    acts = cuda.shared.array(CHUNK * 32, dtype=np.int8)
    t = cuda.threadIdx.x
    row0 = cuda.blockIdx.x * TPB
    row = row0 + t
    r = cuda.blockIdx.y
    n = out.shape[1]
    total = np.float32(0.0)
    for c in range(0, ad.shape[1], CHUNK):
        for i in range(t, TPB * CHUNK * 16, TPB):  # coalesced: thread t takes bytes t, t + TPB, ...
            rr = i // (CHUNK * 16)
            col = i % (CHUNK * 16)
            weights[rr, col] = qs[row0 + rr, c * 16 + col] if row0 + rr < n else 0
        for i in range(t, CHUNK * 32, TPB):
            acts[i] = aq[r, c * 32 + i]
        cuda.syncthreads()
        if row < n:
            for b in range(CHUNK):
                isum = int32(0)
                for j in range(16):
                    byte = int32(weights[t, b * 16 + j])
                    isum += (((byte & 15) - 8) * int32(acts[b * 32 + j])
                             + ((byte >> 4) - 8) * int32(acts[b * 32 + j + 16]))
                total += np.float32(isum) * (f16_to_f32(d_bits[row, c + b]) * ad[r, c + b])
        cuda.syncthreads()
    if row < n:
        out[r, row] = total


KERNELS = {"registers": int8_q4_0_registers, "shared": int8_q4_0_shared}
