"""kernels/common/numba_exp.exp_shifted against float64 exp: within 2 ulps of float32 everywhere
a softmax evaluates it (x - shift in [-104, 0]), exact 0 below the underflow and for -inf."""
import numpy as np
from numba import njit

from quantbench.kernels.common.numba_exp import UNDERFLOW, exp_shifted


@njit
def _exp_at(x, at, count, shift, out):
    return exp_shifted(x, at, count, shift, out)


def _run(x, shift):
    """exp_shifted over x, padded to whole vectors with values that must come out 0, from offset 3."""
    count = -(-x.shape[0] // 16) * 16
    padded = np.full(count + 5, -np.inf, np.float32)
    padded[3:3 + x.shape[0]] = x
    out = np.full(count + 5, 7.0, np.float32)
    total = _exp_at(padded, 3, count, shift, out)
    assert (out[:3] == 7.0).all() and (out[3 + count:] == 7.0).all(), "wrote outside [at, at + count)"
    assert (out[3 + x.shape[0]:3 + count] == 0.0).all()
    return out[3:3 + x.shape[0]], total


def test_exp_shifted_is_within_two_ulps_and_sums_its_values():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-87, 0, 20000), np.linspace(-1, 0, 1001), [0.0, -1e-30]]).astype(np.float32)
    shift = np.float32(1.5)
    out, total = _run(x + shift, shift)
    want = np.exp((x + shift).astype(np.float64) - np.float64(shift))
    ulps = np.abs(out - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2, ulps.max()
    assert abs(total - out.astype(np.float64).sum()) <= 1e-5 * out.sum()


def test_exp_shifted_is_zero_below_the_underflow_and_for_masked_scores():
    x = np.array([UNDERFLOW - 1, -1000.0, -np.inf, 0.0], np.float32)
    out, total = _run(x, np.float32(0.0))
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0] and total == 1.0


def test_exp_shifted_works_in_place():
    x = np.linspace(-3, 0, 32).astype(np.float32)
    want = np.exp(x.astype(np.float64))
    total = _exp_at(x, 0, 32, np.float32(0.0), x)
    assert np.allclose(x, want, rtol=3e-7) and abs(total - want.sum()) <= 1e-5 * want.sum()
