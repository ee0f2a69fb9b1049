"""kernels/common/numba_vectors.py: the explicit-SIMD decoders against numpy, and their typing errors."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.common.numba_vectors import int8_to_f32, nibbles_to_f32, planes_to_f32, trellis_to_f32

RNG = np.random.default_rng(7)
SRC = RNG.integers(0, 256, 128, dtype=np.uint8)
LEVELS = RNG.standard_normal(16).astype(np.float32)


@njit
def _int8(src, off, dst, dst_off, scale):
    int8_to_f32(src, off, dst, dst_off, scale)


@njit
def _nibbles(src, off, dst, dst_off, scale, shift):
    nibbles_to_f32(src, off, dst, dst_off, scale, shift)


@njit
def _planes(src, off, stride, levels, scale, dst, dst_off, bits, count=16):
    if bits == 1:
        planes_to_f32(src, off, stride, 1, levels, scale, dst, dst_off, count)
    elif bits == 2:
        planes_to_f32(src, off, stride, 2, levels, scale, dst, dst_off, count)
    elif bits == 3:
        planes_to_f32(src, off, stride, 3, levels, scale, dst, dst_off, count)
    else:
        planes_to_f32(src, off, stride, 4, levels, scale, dst, dst_off, count)


def test_int8_to_f32_scales_32_signed_bytes_at_unaligned_offsets():
    dst = np.full(40, np.nan, np.float32)
    _int8(SRC, 5, dst, 3, np.float32(0.375))
    np.testing.assert_array_equal(dst[3:35], np.float32(0.375) * SRC[5:37].view(np.int8).astype(np.float32))
    assert np.isnan(dst[:3]).all() and np.isnan(dst[35:]).all()  # nothing written past the block


def test_nibbles_to_f32_writes_low_nibbles_then_high_ones():
    dst = np.full(33, np.nan, np.float32)
    _nibbles(SRC, 9, dst, 1, np.float32(0.5), np.float32(-4.0))
    codes = SRC[9:25].astype(np.float32)
    np.testing.assert_array_equal(dst[1:17], 0.5 * (codes % 16) - 4.0)
    np.testing.assert_array_equal(dst[17:33], 0.5 * np.floor(codes / 16) - 4.0)
    assert np.isnan(dst[0])


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("count", [16, 48])
def test_planes_to_f32_picks_each_codes_level_from_its_bit_planes(bits, count):
    stride, off = 10, 11  # chunk c's plane k: the 16-bit word at src[off + 2 c + k * stride], little-endian
    dst = np.full(count + 4, np.nan, np.float32)
    _planes(SRC, off, stride, LEVELS, np.float32(1.25), dst, 2, bits, count)
    codes = np.zeros(count, np.int64)
    for j in range(count):
        for k in range(bits):
            at = off + 2 * (j // 16) + k * stride
            word = int(SRC[at]) | int(SRC[at + 1]) << 8
            codes[j] |= ((word >> (j % 16)) & 1) << k
    np.testing.assert_array_equal(dst[2:2 + count], np.float32(1.25) * LEVELS[codes])
    assert np.isnan(dst[:2]).all() and np.isnan(dst[2 + count:]).all()


def test_the_decoders_name_a_wrong_array_or_a_bits_count_not_known_at_compile_time():
    dst = np.zeros(32, np.float32)
    with pytest.raises(TypingError, match="C-contiguous uint8"):
        _int8(SRC[::2], 0, dst, 0, np.float32(1.0))
    with pytest.raises(TypingError, match="C-contiguous float32"):
        _nibbles(SRC, 0, dst.astype(np.float64), 0, np.float32(1.0), np.float32(0.0))

    @njit
    def runtime_bits(bits):
        planes_to_f32(SRC, 0, 2, bits, LEVELS, np.float32(1.0), dst, 0, 16)

    with pytest.raises(TypingError, match="bits must be a constant 1..4"):
        runtime_bits(3)


@njit
def _trellis(src, off, window, levels, mask, scale, dst, dst_off, count, k):
    if k == 2:
        trellis_to_f32(src, off, 2, window, levels, mask, scale, dst, dst_off, count)
    else:
        trellis_to_f32(src, off, 3, window, levels, mask, scale, dst, dst_off, count)


@pytest.mark.parametrize("k", [2, 3])
def test_trellis_to_f32_reads_each_value_through_the_shift_register(k):
    L, count, off = 9, 24, 5
    levels = RNG.standard_normal(1 << L).astype(np.float32)
    window = 0b1011001110101  # the bits before the first value: only the low L count
    dst = np.full(count + 4, np.nan, np.float32)
    _trellis(SRC, off, window, levels, (1 << L) - 1, np.float32(0.5), dst, 2, count, k)
    bits = "".join(f"{b:08b}" for b in SRC[off:off + count * k // 8])  # most significant first
    state, want = window, []
    for j in range(count):
        state = ((state << k) | int(bits[j * k:(j + 1) * k], 2)) & ((1 << L) - 1)
        want.append(np.float32(0.5) * levels[state])
    np.testing.assert_array_equal(dst[2:2 + count], np.array(want, np.float32))
    assert np.isnan(dst[:2]).all() and np.isnan(dst[2 + count:]).all()
