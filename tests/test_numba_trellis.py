"""kernels/common/numba_trellis.py: the trellis row decoder against a bit-string model of the shift
register, over rows at strides, and its typing errors."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.common.numba_f16 import f16_table
from quantbench.kernels.common.numba_trellis import WRAP_BITS, trellis_to_f32

RNG = np.random.default_rng(11)
SRC = RNG.integers(0, 256, 600, dtype=np.uint8)
F16 = f16_table()
SCALE_BITS = RNG.standard_normal(40).astype(np.float16).view(np.uint16)
ROWS, SRC_STRIDE, SC_STRIDE, GAP = 3, 90, 2, 6  # rows with gaps between them


@njit
def _rows(off, sc_off, width, dst, dst_off, dst_stride, k, levels):
    if k == 2:
        trellis_to_f32(SRC, off, SRC_STRIDE, SCALE_BITS, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off,
                       dst_stride, 2, levels)
    elif k == 3:
        trellis_to_f32(SRC, off, SRC_STRIDE, SCALE_BITS, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off,
                       dst_stride, 3, levels)
    else:
        trellis_to_f32(SRC, off, SRC_STRIDE, SCALE_BITS, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off,
                       dst_stride, 4, levels)


def _expected(stream: bytes, width, k, L, levels, scale):
    """Each value through the circular L-bit window of its row's stream, started from its last bits."""
    bits = "".join(f"{b:08b}" for b in stream)
    state = int(bits[-WRAP_BITS:], 2)
    out = []
    for j in range(width):
        state = ((state << k) | int(bits[j * k:(j + 1) * k], 2)) & ((1 << L) - 1)
        out.append(np.float32(scale) * levels[state])
    return np.array(out, np.float32)


@pytest.mark.parametrize("k, L, width", [(2, 9, 64), (3, 9, 64), (3, 12, 32), (4, 16, 128)])
def test_trellis_rows_read_each_value_through_the_tail_biting_shift_register(k, L, width):
    levels = RNG.standard_normal(1 << L).astype(np.float32)
    off, sc_off, dst_off, dst_stride = 5, 3, 2, width + GAP
    dst = np.full(dst_off + ROWS * dst_stride, np.nan, np.float32)
    _rows(off, sc_off, width, dst, dst_off, dst_stride, k, levels)
    nbytes = width * k // 8
    for t in range(ROWS):
        start = off + t * SRC_STRIDE
        scale = F16[SCALE_BITS[sc_off + t * SC_STRIDE]]
        got = dst[dst_off + t * dst_stride:][:width]
        np.testing.assert_array_equal(got, _expected(bytes(SRC[start:start + nbytes]), width, k, L, levels, scale))
        gap = dst[dst_off + t * dst_stride + width:dst_off + (t + 1) * dst_stride]
        assert np.isnan(gap).all()
    assert np.isnan(dst[:dst_off]).all()


def test_trellis_rows_need_a_constant_bit_width():
    dst = np.zeros(300, np.float32)

    @njit
    def runtime_bits(bits):
        trellis_to_f32(SRC, 0, 0, SCALE_BITS, 0, 0, F16, 64, 1, dst, 0, 0, bits, np.zeros(512, np.float32))

    with pytest.raises(TypingError, match="bits must be a constant 1..4"):
        runtime_bits(3)
