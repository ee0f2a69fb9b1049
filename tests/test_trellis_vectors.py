"""kernels/formats/trellis_vectors.viterbi_step: one step against numpy's (bit for bit, first
minimum on ties), and its typing errors. Whole paths are checked in test_tcq_trellis.py."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.formats.trellis_vectors import viterbi_step


@njit
def _step(cost, table, x, back, t, k):
    if k == 3:
        viterbi_step(cost, table, x, back, t, 9, 3)
    else:
        viterbi_step(cost, table, x, back, t, 9, 2)


@pytest.mark.parametrize("k", [2, 3])
def test_viterbi_step_is_numpys_step(k):
    rng = np.random.default_rng(k)
    L, P = 9, 1 << (9 - k)
    cost = rng.standard_normal(1 << L).astype(np.float32)
    cost[5::P] = cost[5]  # overlap 5: equal predecessors, the first must win
    table = rng.standard_normal(1 << L).astype(np.float32)
    x = np.float32(0.3)
    grouped = cost.reshape(1 << k, P)
    want_back = grouped.argmin(axis=0)
    d = x - table
    want = grouped.min(axis=0)[np.arange(1 << L) >> k] + d * d
    back = np.full((3, P), 255, np.uint8)
    _step(cost, table, x, back, 1, k)
    assert np.array_equal(cost, want) and np.array_equal(back[1], want_back) and back[1, 5] == 0
    assert (back[0] == 255).all() and (back[2] == 255).all()


def test_viterbi_step_needs_constant_sizes_and_whole_vectors():
    cost, table, back = np.zeros(512, np.float32), np.zeros(512, np.float32), np.zeros((1, 64), np.uint8)

    @njit
    def runtime(L):
        viterbi_step(cost, table, np.float32(0.0), back, 0, L, 3)

    with pytest.raises(TypingError, match="compile-time constants"):
        runtime(9)

    @njit
    def narrow():
        viterbi_step(cost, table, np.float32(0.0), back, 0, 5, 3)

    with pytest.raises(TypingError, match="multiple of 16"):
        narrow()
