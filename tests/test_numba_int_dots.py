"""kernels/common/numba_int_dots.py: block_dots with the activations as matmul/numba_int8's
arrange_steps lays them out, against an exact numpy sum; each instruction set's path (AVX512-VNNI,
AVX2, generic IR: those the host can run), on random and on saturating codes; its typing errors;
and int8_dot end to end at shapes with a partial last step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit
from numba.core.errors import TypingError
from numba.core.registry import cpu_target

import quantbench.kernels.common.numba_int_dots as int_dots
from quantbench.kernels import formats
from quantbench.kernels.common.numba_int_dots import ROWS, block_dots, layout_of
from quantbench.kernels.matmul.numba import CODE_OFFSET, linear
from quantbench.kernels.matmul.numba_int8 import arrange_steps


def _all_rows(qs, d_bits, m_bits, xq, xbias, xscale, xmin, out):
    for r0 in range(0, qs.shape[0], ROWS):
        totals = block_dots(qs, d_bits, m_bits, (r0, r0 + 1, r0 + 2, r0 + 3), xq, xbias, xscale, xmin)
        for i in range(ROWS):
            out[r0 + i] = totals[i]


all_rows = njit(_all_rows)


def _weights(fmt: str, n: int, nb: int, rng):
    d = rng.uniform(0.5, 2.0, (n, nb)).astype(np.float16)
    if fmt == "q8_0":
        qs = rng.integers(-128, 128, (n, nb, 32), dtype=np.int8)
        codes = qs.astype(np.int64)
    else:
        qs = rng.integers(0, 256, (n, nb, 16), dtype=np.uint8)
        codes = np.concatenate([qs & 15, qs >> 4], axis=2).astype(np.int64) - (8 if fmt == "q4_0" else 0)
    mins = rng.uniform(-1.0, 1.0, (n, nb)).astype(np.float16) if fmt == "q4_1" else np.empty((0, 0), np.float16)
    return qs, d, mins, codes


def _activations(fmt: str, qs, mins, nb: int, rng, given=None):
    aq, ad = given or (rng.integers(-127, 128, (1, nb, 32), dtype=np.int8),
                       rng.uniform(0.5, 2.0, (1, nb)).astype(np.float32))
    layout = layout_of(qs.dtype)
    steps = -(-nb // layout.blocks)
    xq = np.empty((1, steps, layout.activation_bytes), np.int8)
    xbias = np.empty((1, steps, 16), np.int32)
    xscale = np.empty((1, steps, 16), np.float32)
    xmin = np.empty((1, steps if mins.size else 0, 16), np.float32)
    arrange_steps(aq, ad, layout.nibbles, CODE_OFFSET[fmt], xq, xbias, xscale, xmin)
    return aq, ad, (xq[0], xbias[0], xscale[0], xmin[0])


def _exact(codes, d, mins, aq, ad):
    dots = (codes * aq.astype(np.int64)).sum(axis=2)  # [n, nb], exact
    total = dots * d.astype(np.float64) * ad.astype(np.float64)
    if mins.size:
        total += mins.astype(np.float64) * ad.astype(np.float64) * aq[0].astype(np.int64).sum(axis=1)
    return total.sum(axis=1)


def _check(fmt: str, nb: int, kernel, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 2 * ROWS
    qs, d, mins, codes = _weights(fmt, n, nb, rng)
    aq, ad, arranged = _activations(fmt, qs, mins, nb, rng)
    out = np.full(n, np.nan, np.float32)
    kernel(qs, d.view(np.uint16), mins.view(np.uint16), *arranged, out)
    exact = _exact(codes, d, mins, aq, ad)
    np.testing.assert_allclose(out, exact, rtol=2e-6, atol=2e-6 * np.abs(exact).max())


@pytest.mark.parametrize("fmt", ["q4_0", "q4_1", "q8_0"])
@pytest.mark.parametrize("nb", [1, 2, 3, 4, 5, 7, 18])
def test_block_dots_match_exact_sums_with_partial_last_steps(fmt, nb):
    _check(fmt, nb, all_rows, seed=nb)


HOST_ISA = int_dots.dot_isa(cpu_target.target_context)
NARROWER = {"vnni": ["avx2", "generic"], "avx2": ["generic"], "generic": []}[HOST_ISA]


def _compiled_for(isa, monkeypatch):
    monkeypatch.setattr(int_dots, "dot_isa", lambda context: isa)
    return njit(_all_rows)  # compiled at its first call, with the patched choice


@pytest.mark.parametrize("fmt", ["q4_0", "q4_1", "q8_0"])
@pytest.mark.parametrize("isa", NARROWER)
def test_block_dots_narrower_instruction_sets_match(fmt, isa, monkeypatch):
    """The paths the host would not pick by itself (its own is the test above)."""
    kernel = _compiled_for(isa, monkeypatch)
    _check(fmt, 6, kernel)
    asm = kernel.inspect_asm(kernel.signatures[0])
    assert "vpdpbusd" not in asm
    if isa == "avx2":
        assert "vpmaddubsw" in asm


@pytest.mark.parametrize("isa", [HOST_ISA, *NARROWER])
def test_block_dots_are_exact_where_int16_pair_sums_would_saturate(isa, monkeypatch):
    """q8_0 codes 127 and -128 (flipped: 255 and 0) against activations of +-127: a flipped pair's
    products, 2 x 255 x 127, overflow vpmaddubsw's int16."""
    n, nb = 2 * ROWS, 4
    qs = np.full((n, nb, 32), 127, np.int8)
    qs[1::2, :, ::3] = -128
    d = np.ones((n, nb), np.float16)
    aq = np.where(np.arange(32) % 4 < 2, 127, -127).astype(np.int8)[None, None].repeat(nb, 1)
    aq[0, 1] = 127
    ad = np.ones((1, nb), np.float32)
    none = np.empty((0, 0), np.float16)
    _, _, arranged = _activations("q8_0", qs, none, nb, None, (aq, ad))
    out = np.full(n, np.nan, np.float32)
    _compiled_for(isa, monkeypatch)(qs, d.view(np.uint16), none.view(np.uint16), *arranged, out)
    np.testing.assert_array_equal(out, _exact(qs.astype(np.int64), d, none, aq, ad))


def test_block_dots_reject_float_codes_and_short_row_tuples():
    qs = np.zeros((4, 4, 16), np.float32)
    empty = np.empty((0, 16), np.float32)
    with pytest.raises(TypingError, match="qs must be uint8 q4 nibbles or int8 q8_0 codes"):
        all_rows(qs, np.zeros((4, 4), np.uint16), np.empty((0, 0), np.uint16), np.zeros((1, 128), np.int8),
                 np.zeros((1, 16), np.int32), np.zeros((1, 16), np.float32), empty, np.zeros(4, np.float32))

    @njit
    def three_rows(qs, d_bits, m_bits, xq, xbias, xscale, xmin):
        return block_dots(qs, d_bits, m_bits, (0, 1, 2), xq, xbias, xscale, xmin)

    with pytest.raises(TypingError, match="rows must be a tuple of 4 integers"):
        three_rows(np.zeros((4, 4, 16), np.uint8), np.zeros((4, 4), np.uint16), np.empty((0, 0), np.uint16),
                   np.zeros((1, 128), np.int8), np.zeros((1, 16), np.int32), np.zeros((1, 16), np.float32), empty)


@pytest.mark.parametrize("spec", ["q4_0", "q4_1", "q8_0"])
@pytest.mark.parametrize("n,k", [(5, 96), (9, 576)])
def test_int8_dot_linear_matches_dequantized_weights_with_quantized_activations(spec, n, k):
    fmt = formats.get(spec)
    gen = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=gen)
    x = torch.randn(3, k, generator=gen)
    expected = formats.get("q8_0").roundtrip(x).double() @ fmt.roundtrip(w).double().T
    got = linear(x, fmt.encode(w), fmt, "int8_dot")
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
