"""A float32 exp that LLVM vectorizes, for the numba attention kernels' softmax.

numba compiles math.exp to a call of libm's expf per value (no SVML here), which cannot be
vectorized: at three queries per KV head that call was a third of the native decode's time.
`exp_shifted` instead computes e^(x - shift) for a contiguous run of scores in passes that are
plain arithmetic over arrays: x - shift = k ln2 + r with |r| <= ln2 / 2, e^r by its degree-7 Taylor
polynomial (truncation error r^8 / 8! < 6e-9, below float32's half ulp), and 2^k by writing the
exponent field k + 127 into an int32 buffer read back as float32 (the `bits` view). Inputs below
UNDERFLOW, -inf (a masked score) included, give exactly 0, as math.exp's result rounds to.
"""
from __future__ import annotations

import numpy as np
from numba import njit

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693145751953125)  # ln 2 split so that k * LN2_HI is exact for |k| < 2^8
LN2_LO = np.float32(1.428606765330187e-06)
UNDERFLOW = np.float32(-87.0)  # e^-87 = 1.6e-38, the bottom of float32's normal range


@njit(cache=True, inline="always")
def exp_shifted(x, count, shift, exponent, bits, out):
    """out[t] = e^(x[t] - shift) for t < count; exponent is int32 scratch and bits its float32 view
    (exponent.view(np.float32)), each at least count long. Returns the sum of out[:count]."""
    for t in range(count):
        v = x[t] - shift
        v = v if v > UNDERFLOW else UNDERFLOW
        k = np.floor(v * LOG2E + np.float32(0.5))
        r = (v - k * LN2_HI) - k * LN2_LO
        p = np.float32(1.0 / 5040.0) + r * np.float32(1.0 / 40320.0)
        p = np.float32(1.0 / 720.0) + r * p
        p = np.float32(1.0 / 120.0) + r * p
        p = np.float32(1.0 / 24.0) + r * p
        p = np.float32(1.0 / 6.0) + r * p
        p = np.float32(0.5) + r * p
        p = np.float32(1.0) + r * p
        out[t] = np.float32(1.0) + r * p
        exponent[t] = (np.int32(k) + np.int32(127)) << np.int32(23)
    total = np.float32(0.0)
    for t in range(count):
        e = out[t] * bits[t] if x[t] - shift > UNDERFLOW else np.float32(0.0)
        out[t] = e
        total += e
    return total
