"""kernels/formats/trellis_vectors.viterbi_step: one step against numpy's (bit for bit), and its
typing errors. Whole paths, ties included, are checked in test_tcq_trellis.py."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.formats.trellis_vectors import viterbi_step


@njit
def _step(history, table, x, t, k):
    if k == 3:
        viterbi_step(history, table, x, t, 9, 3)
    else:
        viterbi_step(history, table, x, t, 9, 2)


@pytest.mark.parametrize("k", [2, 3])
def test_viterbi_step_is_numpys_step(k):
    rng = np.random.default_rng(k)
    L, P = 9, 1 << (9 - k)
    history = np.full((4, P), 7.0, np.float32)
    history[1] = rng.standard_normal(P).astype(np.float32)
    table = rng.standard_normal(1 << L).astype(np.float32)
    x = np.float32(0.3)
    d = x - table
    cost = history[1][np.arange(1 << L) >> k] + d * d  # numpy's float32 steps, in this order
    want = cost.reshape(1 << k, P).min(axis=0)
    before = history.copy()
    _step(history, table, x, 1, k)
    assert np.array_equal(history[2], want)
    assert np.array_equal(history[[0, 1, 3]], before[[0, 1, 3]])  # only the next row is written


def test_viterbi_step_needs_constant_sizes_and_whole_vectors():
    history, table = np.zeros((2, 64), np.float32), np.zeros(512, np.float32)

    @njit
    def runtime(L):
        viterbi_step(history, table, np.float32(0.0), 0, L, 3)

    with pytest.raises(TypingError, match="compile-time constants"):
        runtime(9)

    @njit
    def narrow():
        viterbi_step(history, table, np.float32(0.0), 0, 5, 3)

    with pytest.raises(TypingError, match="multiple of 16"):
        narrow()

    @njit
    def flat():
        viterbi_step(table, table, np.float32(0.0), 0, 9, 3)

    with pytest.raises(TypingError, match="2-d float32"):
        flat()
