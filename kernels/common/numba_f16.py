"""Helpers shared by the numba kernels: IEEE half-precision bits <-> float32.

Numba has no float16 type on the CPU, so fp16 side data (scales, norms) travels as uint16 bits
and is converted inside the kernels. Both directions match torch's `.half()` / `.float()`
exactly (round to nearest even, subnormals, infinities).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit


def f16_bits_to_f32_py(h):
    """fp16 bits (from uint16 or int16 storage) -> float32. Plain Python: compiled below for the
    CPU and by the numba-cuda modules as a device function (codecs/tcq_cuda_jit.py)."""
    h = np.uint32(h) & np.uint32(0xFFFF)
    sign = (h >> 15) & 1
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        value = np.float32(mant) * np.float32(2.0 ** -24)
    elif exp == 31:
        value = np.float32(np.inf) if mant == 0 else np.float32(np.nan)
    else:
        value = np.float32((1024 + mant) * 2.0 ** (np.int64(exp) - 25))
    return -value if sign else value


f16_bits_to_f32 = njit(cache=True, inline="always")(f16_bits_to_f32_py)


@njit(cache=True, inline="always")
def f32_to_f16_bits(x):
    bits = np.uint32(np.array([np.float32(x)]).view(np.uint32)[0])
    sign = np.uint16((bits >> 16) & 0x8000)
    exp = np.int64((bits >> 23) & 0xFF)
    mant = bits & 0x7FFFFF
    if exp == 255:  # inf / nan
        return np.uint16(sign | 0x7C00 | (0x200 if mant else 0))
    e = exp - 127 + 15
    if e >= 31:
        return np.uint16(sign | 0x7C00)
    if e <= 0:  # subnormal half (or zero)
        if e < -10:
            return sign
        mant = mant | 0x800000
        shift = np.uint32(14 - e)
        half = mant >> shift
        rem = mant & ((np.uint32(1) << shift) - 1)
        halfway = np.uint32(1) << (shift - 1)
        if rem > halfway or (rem == halfway and (half & 1)):
            half += 1
        return np.uint16(sign | half)
    half = np.uint32((e << 10) | (mant >> 13))
    rem = mant & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (half & 1)):
        half += 1  # may carry into the exponent, which is the right rounding
    return np.uint16(sign | half)


@njit(cache=True)
def _f16_table():
    table = np.empty(1 << 16, dtype=np.float32)
    for bits in range(1 << 16):
        table[bits] = f16_bits_to_f32(bits)
    return table


@functools.cache
def f16_table() -> np.ndarray:
    """float32 value of every fp16 bit pattern: a kernel's table load (256 KiB, in L2) is several
    times faster than converting the bits with f16_bits_to_f32's branches."""
    return _f16_table()
