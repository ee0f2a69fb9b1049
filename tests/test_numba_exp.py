"""kernels/common/numba_exp.exp_shifted against float64 exp: within 2 ulps of float32 everywhere
a softmax evaluates it (x - shift in [-104, 0]), exact 0 below the underflow and for -inf."""
import numpy as np
from numba import njit

from quantbench.kernels.common.numba_exp import UNDERFLOW, exp_shifted


@njit
def _run(x, shift):
    exponent = np.empty(x.shape[0], np.int32)
    out = np.empty(x.shape[0], np.float32)
    total = exp_shifted(x, x.shape[0], shift, exponent, exponent.view(np.float32), out)
    return out, total


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
