"""kernels/common/numba_row_math.py: the 16-row dot products and updates, the lanes' max and the
aligned buffers against numpy, at unaligned offsets and every row width the kernels use."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.common.numba_row_math import aligned_zeros, lanes_max, tile_axpy, tile_dots

RNG = np.random.default_rng(11)


@njit
def _dots(q, q_off, tile, tile_off, width, out, out_off):
    tile_dots(q, q_off, tile, tile_off, width, out, out_off)


@njit
def _axpy(acc, acc_off, p, p_off, tile, tile_off, width):
    tile_axpy(acc, acc_off, p, p_off, tile, tile_off, width)


@njit
def _max(x, x_off, n, start):
    return lanes_max(x, x_off, n, start)


@njit
def _aligned(n):
    a = aligned_zeros(n)
    return a, a.ctypes.data % 64


def _floats(n):
    return RNG.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("width", [16, 32, 64, 128])
def test_tile_dots_scores_each_of_16_rows_into_its_own_lane(width):
    q, tile = _floats(width + 5), _floats(16 * width + 7)
    out = np.full(21, np.nan, np.float32)
    _dots(q, 5, tile, 7, width, out, 3)
    want = tile[7:7 + 16 * width].reshape(16, width).astype(np.float64) @ q[5:5 + width]
    np.testing.assert_allclose(out[3:19], want, rtol=1e-5, atol=1e-5 * np.sqrt(width))
    assert np.isnan(out[:3]).all() and np.isnan(out[19:]).all()


@pytest.mark.parametrize("width", [16, 64, 128])
def test_tile_axpy_adds_the_weighted_rows_and_nothing_past_the_row(width):
    acc, p, tile = _floats(width + 4), _floats(18), _floats(16 * width + 7)
    want = acc.astype(np.float64)
    want[2:2 + width] += p[1:17].astype(np.float64) @ tile[7:7 + 16 * width].reshape(16, width)
    _axpy(acc, 2, p, 1, tile, 7, width)
    np.testing.assert_allclose(acc, want, rtol=1e-5, atol=1e-5)
    assert acc[:2].tolist() == want[:2].astype(np.float32).tolist()


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
        _dots(np.zeros(16), 0, np.zeros(256, np.float32), 0, 16, np.zeros(16, np.float32), 0)
    with pytest.raises(TypingError, match="C-contiguous float32"):
        _max(np.zeros(32, np.float32)[::2], 0, 16, np.float32(0.0))
