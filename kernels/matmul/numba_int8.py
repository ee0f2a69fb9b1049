"""Numba CPU kernels for y = x @ W^T with 8-bit activations and integer dot products (int8_dot).

The activations are quantized on the fly to q8_0 blocks of 32 (blocks_numba's block quantizer,
bit for bit the q8_0 format's encoding; one serial pass for a few rows, where starting the
thread pool would cost more than the work) plus each block's integer sum, llama.cpp's q8_1 idea: with
w = d_w (q - 8) (q4_0) the offset folds into one product, sum_j (q_j - 8) a_j = sum_j q_j a_j -
8 sum_j a_j, and with w = d_w q + m_w (q4_1) the minimum contributes m_w d_a sum_j a_j. Each
block's dot product of codes is an exact int32 sum (what dp4a / VNNI compute); floats appear
only once per block: d_w d_a isum, accumulated along the row.

A task owns ROWS_PER_TASK weight rows and walks the activation rows in the outer loop, so its
weight rows stay in cache while every activation row passes once.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.codecs.blocks_numba import quantize_block_q8_0
from quantbench.kernels.matmul.numba_fma import LOW, ROWS_PER_TASK, SHIFT, row_tasks


@njit(cache=True)
def quantize_activation_row(x, r, a_bits, aq, f16, ad, asum, width):
    """Row r of x float32 [m, nb, 32] -> q8_0 codes aq int8 [m, nb, 32] (bit for bit the q8_0
    format's encoding), scales ad float32 [m, nb] (the fp16 scale's value) and code sums asum int32."""
    for b in range(x.shape[1]):
        quantize_block_q8_0(x[r], b, width, a_bits[r], aq[r], b)
        ad[r, b] = f16[a_bits[r, b]]
        total = np.int32(0)
        for j in range(width):
            total += np.int32(aq[r, b, j])
        asum[r, b] = total


@njit(cache=True)
def quantize_activations(x, a_bits, aq, f16, ad, asum, width):
    for r in range(x.shape[0]):
        quantize_activation_row(x, r, a_bits, aq, f16, ad, asum, width)


@njit(parallel=True, cache=True)
def quantize_activations_parallel(x, a_bits, aq, f16, ad, asum, width):
    for r in prange(x.shape[0]):
        quantize_activation_row(x, r, a_bits, aq, f16, ad, asum, width)


@njit(parallel=True, cache=True)
def int8_q8_0(aq, ad, d_bits, qs, f16, out, width):
    """aq int8 [m, nb, 32], ad float32 [m, nb]; qs int8 [n, nb, 32]; out float32 [m, n]."""
    m = aq.shape[0]
    n, nb = d_bits.shape
    for task in prange(row_tasks(n)):
        for r in range(m):
            for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
                total = np.float32(0.0)
                for b in range(nb):
                    isum = np.int32(0)
                    for j in range(width):
                        isum += np.int32(qs[row, b, j]) * np.int32(aq[r, b, j])
                    total += np.float32(isum) * (f16[d_bits[row, b]] * ad[r, b])
                out[r, row] = total


@njit(parallel=True, cache=True)
def int8_q4(aq, ad, asum, d_bits, m_bits, qs, f16, out, half, offset):
    """q4_0 (m_bits empty, offset 8) and q4_1 (offset 0; the minimum times d_a * sum_j a_j)."""
    with_min = m_bits.shape[0] > 0
    m = aq.shape[0]
    n, nb = d_bits.shape
    for task in prange(row_tasks(n)):
        for r in range(m):
            for row in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
                total = np.float32(0.0)
                for b in range(nb):
                    isum = np.int32(0)
                    for j in range(half):
                        byte = np.int32(qs[row, b, j])
                        isum += (byte & LOW) * np.int32(aq[r, b, j]) + (byte >> SHIFT) * np.int32(aq[r, b, j + half])
                    isum -= offset * asum[r, b]
                    total += np.float32(isum) * (f16[d_bits[row, b]] * ad[r, b])
                    if with_min:
                        total += f16[m_bits[row, b]] * (ad[r, b] * np.float32(asum[r, b]))
                out[r, row] = total
