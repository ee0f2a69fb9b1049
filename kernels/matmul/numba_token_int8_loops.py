"""Numba CPU loops for y = x @ W^T with the activations quantized per token to int8 (W8A8), and the
per-token quantizer W4A8 shares.

Each activation row gets one scale d_x = amax / 127 and codes round(x / d_x) (ties to even): bit for
bit the `int8` format's encoding (kernels/formats/int_rows.py). The codes are kept as float32 values:
numba types integer arithmetic as 64-bit, whose products vectorize poorly, while float32 holds every
product of two codes (|q_x q_w| <= 127^2) exactly and their sums exactly up to 2^24 (any k <= 1024
in the worst case; beyond, a sum rounds as a float32 matmul's does). So W8A8's dot products are the
integer sums VNNI's vpdpbusd or dp4a compute in int32, on float32 FMA lanes, then rescaled once:
y = d_x d_w isum. (W4A8 runs on int8_dot's integer kernels: numba_token_int8.py.)

Kernel: `w8a8`, dot products over whole rows, 2 activation rows x 4 weight rows at a time where
there are that many: the GEMV and the GEMM. A task owns a run of weight rows, so they stay in cache
while every activation row passes. `quantize_token` writes float32 codes for w8a8 or int8 codes
for W4A8 (numba compiles one per codes dtype).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from quantbench.kernels.matmul.numba_fma import FAST, ROWS_PER_TASK, row_tasks

QMAX = np.float32(127.0)


@njit(cache=True)
def quantize_token(x, r, codes, scales):
    """Row r of x float32 [m, k] -> integer codes as float32 [m, k], scales float32 [m]."""
    k = x.shape[1]
    amax = np.float32(0.0)
    for j in range(k):
        amax = max(amax, abs(x[r, j]))
    d = amax / QMAX
    if not d > 0:
        d = np.float32(1.0)
    scales[r] = d
    for j in range(k):
        codes[r, j] = min(max(np.rint(x[r, j] / d), -QMAX), QMAX)


@njit(cache=True)
def quantize_tokens(x, codes, scales):
    for r in range(x.shape[0]):
        quantize_token(x, r, codes, scales)


@njit(parallel=True, cache=True)
def quantize_tokens_parallel(x, codes, scales):
    for r in prange(x.shape[0]):
        quantize_token(x, r, codes, scales)


@njit(cache=True, fastmath=FAST)
def code_dot(w, x):
    """sum_j w[j] x[j] of an int8 weight row and a row of activation codes (float32)."""
    part = np.float32(0.0)
    for j in range(w.shape[0]):
        part += np.float32(w[j]) * x[j]
    return part


@njit(cache=True, fastmath=FAST)
def code_dot_2x4(w, x, acc):
    """acc[4 a + i] = sum_j w[i, j] x[a, j] for 2 activation rows a and 4 weight rows i: each code
    loaded serves 2 or 4 products (register blocking)."""
    p00 = p01 = p02 = p03 = p10 = p11 = p12 = p13 = np.float32(0.0)
    for j in range(x.shape[1]):
        a0, a1 = x[0, j], x[1, j]
        w0, w1, w2, w3 = np.float32(w[0, j]), np.float32(w[1, j]), np.float32(w[2, j]), np.float32(w[3, j])
        p00 += w0 * a0
        p01 += w1 * a0
        p02 += w2 * a0
        p03 += w3 * a0
        p10 += w0 * a1
        p11 += w1 * a1
        p12 += w2 * a1
        p13 += w3 * a1
    acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7] = p00, p01, p02, p03, p10, p11, p12, p13


@njit(parallel=True, cache=True)
def w8a8(x_codes, x_scales, w_codes, w_scales, out):
    """x_codes float32 [m, k], x_scales float32 [m]; w_codes int8 [n, k], w_scales float32 [n]; out [m, n].
    Pairs of activation rows x quads of weight rows, the rest one output at a time."""
    m = x_codes.shape[0]
    n = w_codes.shape[0]
    for task in prange(row_tasks(n)):
        lo, hi = task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)
        quads = lo + (hi - lo) // 4 * 4
        acc = np.empty(8, np.float32)
        for r in range(0, m - 1, 2):
            for row in range(lo, quads, 4):
                code_dot_2x4(w_codes[row:row + 4], x_codes[r:r + 2], acc)
                for i in range(8):
                    a, w = r + i // 4, row + i % 4
                    out[a, w] = acc[i] * (x_scales[a] * w_scales[w])
            for row in range(quads, hi):
                for a in range(r, r + 2):
                    out[a, row] = code_dot(w_codes[row], x_codes[a]) * (x_scales[a] * w_scales[row])
        if m % 2:
            for row in range(lo, hi):
                out[m - 1, row] = code_dot(w_codes[row], x_codes[m - 1]) * (x_scales[m - 1] * w_scales[row])
