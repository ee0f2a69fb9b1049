"""kernels/common/numba_row_math.py: the 8-row dot products and 16-row updates of 1 to 3 queries,
the lanes' max and the aligned buffers against numpy, at unaligned offsets and strides and every row
width the kernels use."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.common.numba_row_math import aligned_zeros, lanes_max, tile_axpy_n, tile_dots, tile_dots_n

RNG = np.random.default_rng(11)


@njit
def _max(x, x_off, n, start):
    return lanes_max(x, x_off, n, start)


@njit
def _aligned(n):
    a = aligned_zeros(n)
    return a, a.ctypes.data % 64


def _floats(n):
    return RNG.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("nq", [1, 2, 3])
@pytest.mark.parametrize("width", [16, 32, 64, 128])
def test_tile_dots_scores_8_rows_of_each_query_into_its_own_lanes(width, nq):
    q_stride, out_stride = width + 3, 11
    q, tile = _floats(5 + nq * q_stride), _floats(8 * width + 7)
    out = np.full(3 + nq * out_stride, np.nan, np.float32)
    tile_dots_n(q, 5, q_stride, nq, tile, 7, width, out, 3, out_stride)
    rows = tile[7:7 + 8 * width].reshape(8, width).astype(np.float64)
    for j in range(nq):
        at = 3 + j * out_stride
        want = rows @ q[5 + j * q_stride:5 + j * q_stride + width]
        np.testing.assert_allclose(out[at:at + 8], want, rtol=1e-5, atol=1e-5 * np.sqrt(width))
        assert np.isnan(out[at + 8:at + out_stride]).all()
    assert np.isnan(out[:3]).all()


@pytest.mark.parametrize("nq", [1, 2, 3])
@pytest.mark.parametrize("width", [16, 32, 64, 80, 128])  # 80: a block of 4 chunks and one more
def test_tile_axpy_adds_the_weighted_rows_of_each_query_and_nothing_past_them(width, nq):
    acc_stride, p_stride = width + 5, 19
    acc, p, tile = _floats(2 + nq * acc_stride), _floats(1 + nq * p_stride), _floats(16 * width + 7)
    want = acc.astype(np.float64)
    rows = tile[7:7 + 16 * width].reshape(16, width).astype(np.float64)
    for j in range(nq):
        at = 2 + j * acc_stride
        want[at:at + width] += p[1 + j * p_stride:17 + j * p_stride].astype(np.float64) @ rows
    tile_axpy_n(acc, 2, acc_stride, nq, p, 1, p_stride, tile, 7, width)
    np.testing.assert_allclose(acc, want, rtol=1e-5, atol=1e-5)
    untouched = np.ones(acc.size, bool)
    for j in range(nq):
        untouched[2 + j * acc_stride:2 + j * acc_stride + width] = False
    assert acc[untouched].tolist() == want[untouched].astype(np.float32).tolist()


def test_lanes_max_starts_from_its_argument_and_keeps_minus_infinity():
    x = _floats(40)
    assert _max(x, 3, 32, np.float32(-np.inf)) == x[3:35].max()
    assert _max(x, 3, 32, np.float32(100.0)) == 100.0
    masked = np.full(16, -np.inf, np.float32)
    assert _max(masked, 0, 16, np.float32(-np.inf)) == -np.inf


def test_aligned_zeros_start_on_a_cache_line():
    for n in (1, 17, 1000):
        a, misalignment = _aligned(n)
        assert a.shape == (n,) and misalignment == 0 and not a.any()


def test_row_math_names_a_wrong_array():
    with pytest.raises(TypingError, match="C-contiguous float32"):
        tile_dots_n(np.zeros(16), 0, 0, 1, np.zeros(128, np.float32), 0, 16, np.zeros(8, np.float32), 0, 0)
    with pytest.raises(TypingError, match="C-contiguous float32"):
        _max(np.zeros(32, np.float32)[::2], 0, 16, np.float32(0.0))


@njit
def _dots_of_four(q, tile, out):
    tile_dots(q, 0, 16, 4, tile, 0, 16, out, 0, 8)


def test_row_math_names_a_query_count_it_cannot_hold_in_registers():
    with pytest.raises(TypingError, match="query count must be a constant 1..3"):
        _dots_of_four(np.zeros(64, np.float32), np.zeros(128, np.float32), np.zeros(32, np.float32))
