"""Numba CPU kernels for y = x @ W^T with 8-bit activations and integer dot products (int8_dot).

The activations are quantized on the fly to q8_0 blocks of 32 (blocks_numba's block quantizer,
bit for bit the q8_0 format's encoding; one serial pass for a few rows, where starting the thread
pool would cost more than the work), then arranged for the explicit-SIMD block dot products of
kernels/common/numba_int_dots.py, with llama.cpp's q8_1 idea: with w = d_w (q - 8) (q4_0) the offset
folds into the integer sums, sum_j (q_j - 8) a_j = sum_j q_j a_j - 8 sum_j a_j (the lanes' bias),
and with w = d_w q + m_w (q4_1) the minimum contributes m_w d_a sum_j a_j. Each block's dot product
of codes is an exact int32 sum (what dp4a / VNNI compute); floats appear only once per lane and step.

A task owns ROWS weight rows and walks the activation rows inside, so its weight rows stay in L1
while every activation row passes once.

q4_0 4096 x 4096, one activation row, 2 threads on an AMD EPYC (Zen 5, AVX512-VNNI): 1.25 ms with a
scalar int32 loop per block, 0.11 ms with block_dots (torch's int4 kernel: 0.32 ms in the same run).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.codecs.blocks_numba import quantize_block_q8_0
from quantbench.kernels.common.numba_int_dots import ROWS, block_dots


@njit(cache=True)
def quantize_activation_row(x, r, a_bits, aq, f16, ad, width):
    """Row r of x float32 [m, nb, 32] -> q8_0 codes aq int8 [m, nb, 32] (bit for bit the q8_0
    format's encoding) and scales ad float32 [m, nb] (the fp16 scale's value)."""
    for b in range(x.shape[1]):
        quantize_block_q8_0(x[r], b, width, a_bits[r], aq[r], b)
        ad[r, b] = f16[a_bits[r, b]]


@njit(cache=True)
def quantize_activations(x, a_bits, aq, f16, ad, width):
    for r in range(x.shape[0]):
        quantize_activation_row(x, r, a_bits, aq, f16, ad, width)


@njit(parallel=True, cache=True)
def quantize_activations_parallel(x, a_bits, aq, f16, ad, width):
    for r in prange(x.shape[0]):
        quantize_activation_row(x, r, a_bits, aq, f16, ad, width)


@njit(cache=True)
def arrange_steps(aq, ad, nibbles, offset, xq, xbias, xscale, xmin):
    """The q8_0 activations aq int8 [m, nb, 32], ad float32 [m, nb] in block_dots' order
    (kernels/common/numba_int_dots.py) for q4 weights (nibbles: four blocks a step, the codes meeting
    the low nibbles, then the high ones) or q8_0 weights (two blocks a step, as they are):
    xq int8 [m, steps, 128 or 64], xbias int32 [m, steps, 16] (minus offset times each lane's codes),
    xscale float32 [m, steps, 16] and, unless xmin is empty, xmin float32 [m, steps, 16] (d_a times
    each lane's code sum); zeros past block nb."""
    m, nb = ad.shape
    per_step = 4 if nibbles else 2
    lanes = 16 // per_step  # lanes a block
    xq[:] = 0
    xbias[:] = 0
    xscale[:] = 0.0
    xmin[:] = 0.0
    for r in range(m):
        for b in range(nb):
            t, slot = b // per_step, b % per_step
            for j in range(32):
                if nibbles:
                    xq[r, t, 16 * slot + j % 16 + 64 * (j // 16)] = aq[r, b, j]
                else:
                    xq[r, t, 32 * slot + j] = aq[r, b, j]
            for lane in range(lanes):
                total = np.int32(0)
                for j in range(4 * lane, 4 * lane + 4):
                    total += np.int32(aq[r, b, j])
                    if nibbles:
                        total += np.int32(aq[r, b, 16 + j])
                xbias[r, t, lanes * slot + lane] = -offset * total
                xscale[r, t, lanes * slot + lane] = ad[r, b]
                if xmin.shape[1] > 0:
                    xmin[r, t, lanes * slot + lane] = ad[r, b] * np.float32(total)


def step_buffers(m: int, nb: int, layout, with_minimum: bool):
    """Empty xq, xbias, xscale, xmin for m activation rows of nb blocks, as arrange_steps fills them."""
    steps = -(-nb // layout.blocks)
    return (np.empty((m, steps, layout.activation_bytes), np.int8), np.empty((m, steps, 16), np.int32),
            np.empty((m, steps, 16), np.float32), np.empty((m, steps if with_minimum else 0, 16), np.float32))


@njit(parallel=True, cache=True)
def int8_blocks(xq, xbias, xscale, xmin, d_bits, m_bits, qs, out):
    """q8_0 (qs int8), q4_0 (qs uint8 nibbles, m_bits empty) and q4_1 (m_bits and xmin: each block's
    minimum times d_a sum_j a_j), the activations arranged by arrange_steps; block_dots takes ROWS
    weight rows at a time (the last group clamped to row n - 1: it recomputes that row, only rows
    below n are written)."""
    m = xq.shape[0]
    n = d_bits.shape[0]
    for task in prange((n + ROWS - 1) // ROWS):
        r0 = task * ROWS
        rows = (r0, min(r0 + 1, n - 1), min(r0 + 2, n - 1), min(r0 + 3, n - 1))
        for r in range(m):
            totals = block_dots(qs, d_bits, m_bits, rows, xq[r], xbias[r], xscale[r], xmin[r])
            for i in range(min(ROWS, n - r0)):
                out[r, r0 + i] = totals[i]
