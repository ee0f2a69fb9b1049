"""kernels/common/numba_vectors.py: the explicit-SIMD decoders against numpy, and their typing errors."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError
from numba.core.registry import cpu_target

from quantbench.kernels.common import numba_vectors
from quantbench.kernels.common.numba_f16 import f16_table
from quantbench.kernels.common.numba_vectors import int8_to_f32, nibbles_to_f32, planes_to_f32

RNG = np.random.default_rng(7)
SRC = RNG.integers(0, 256, 400, dtype=np.uint8)
LEVELS = RNG.standard_normal(16).astype(np.float32)
F16 = f16_table()
SCALES = RNG.standard_normal(40).astype(np.float16)
SCALE_BITS = SCALES.view(np.uint16)
ROWS, SRC_STRIDE, SC_STRIDE, DST_STRIDE = 3, 70, 3, 75  # rows with gaps between them, at every step


@njit
def _int8(src, off, scales, sc_off, blocks, dst, dst_off):
    int8_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, blocks, ROWS, dst, dst_off, DST_STRIDE)


@njit
def _nibbles(src, off, scales, sc_off, mins, blocks, dst, dst_off):
    nibbles_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, blocks, ROWS, dst, dst_off, DST_STRIDE, mins)


@njit
def _planes(src, off, stride, levels, scales, sc_off, dst, dst_off, dst_stride, bits, width):
    if bits == 1:
        planes_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off, dst_stride,
                      stride, 1, levels)
    elif bits == 2:
        planes_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off, dst_stride,
                      stride, 2, levels)
    elif bits == 3:
        planes_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off, dst_stride,
                      stride, 3, levels)
    else:
        planes_to_f32(src, off, SRC_STRIDE, scales, sc_off, SC_STRIDE, F16, width, ROWS, dst, dst_off, dst_stride,
                      stride, 4, levels)


def _scale(index):
    return np.float32(SCALES[index])


def _written(dst, dst_off, width, dst_stride=DST_STRIDE):
    """dst's untouched entries (still NaN) must be exactly those outside the rows' values."""
    mask = np.ones(dst.size, bool)
    for t in range(ROWS):
        mask[dst_off + t * dst_stride:dst_off + t * dst_stride + width] = False
    return np.isnan(dst[mask]).all()


@pytest.mark.parametrize("blocks", [1, 2])
def test_int8_to_f32_scales_each_rows_blocks_of_32_signed_bytes(blocks):
    dst = np.full(2 + ROWS * DST_STRIDE, np.nan, np.float32)
    _int8(SRC, 5, SCALE_BITS, 4, blocks, dst, 2)
    for t in range(ROWS):
        for b in range(blocks):
            codes = SRC[5 + t * SRC_STRIDE + 32 * b:][:32].view(np.int8).astype(np.float32)
            at = 2 + t * DST_STRIDE + 32 * b
            np.testing.assert_array_equal(dst[at:at + 32], _scale(4 + t * SC_STRIDE + b) * codes)
    assert _written(dst, 2, 32 * blocks)


@pytest.mark.parametrize("with_min", [False, True])
def test_nibbles_to_f32_writes_low_nibbles_then_high_ones_with_its_shift(with_min):
    dst = np.full(1 + ROWS * DST_STRIDE, np.nan, np.float32)
    mins = np.roll(SCALE_BITS, 7) if with_min else None
    _nibbles(SRC, 9, SCALE_BITS, 2, mins, 2, dst, 1)
    for t in range(ROWS):
        for b in range(2):
            codes = SRC[9 + t * SRC_STRIDE + 16 * b:][:16].astype(np.float32)
            i = 2 + t * SC_STRIDE + b
            d = _scale(i)
            shift = np.float32(np.roll(SCALES, 7)[i]) if with_min else np.float32(-8.0) * d
            at = 1 + t * DST_STRIDE + 32 * b
            np.testing.assert_allclose(dst[at:at + 16], d * (codes % 16) + shift, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(dst[at + 16:at + 32], d * np.floor(codes / 16) + shift, rtol=1e-6, atol=1e-6)
    assert _written(dst, 1, 64)


def _check_planes(planes, bits, width):
    # chunk c's plane k in row t: the 16-bit word at src[off + t * SRC_STRIDE + 2 c + k * stride]
    stride, off = width // 8 + 2, 11
    src = RNG.integers(0, 256, off + ROWS * SRC_STRIDE + 4 * stride, dtype=np.uint8)
    dst_stride = width + 11
    dst = np.full(2 + ROWS * dst_stride, np.nan, np.float32)
    planes(src, off, stride, LEVELS, SCALE_BITS, 6, dst, 2, dst_stride, bits, width)
    for t in range(ROWS):
        codes = np.zeros(width, np.int64)
        for j in range(width):
            for k in range(bits):
                at = off + t * SRC_STRIDE + 2 * (j // 16) + k * stride
                word = int(src[at]) | int(src[at + 1]) << 8
                codes[j] |= ((word >> (j % 16)) & 1) << k
        at = 2 + t * dst_stride
        np.testing.assert_array_equal(dst[at:at + width], _scale(6 + t * SC_STRIDE) * LEVELS[codes])
    assert _written(dst, 2, width, dst_stride)


HOST_PLANES = numba_vectors.planes_isa(cpu_target.target_context)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("width", [16, 48, 64, 128])  # 64, 128: GF2P8AFFINEQB's chunks where the host has it
def test_planes_to_f32_picks_each_codes_level_from_its_bit_planes(bits, width):
    _check_planes(_planes, bits, width)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_planes_to_f32_select_tree_matches_on_any_host(bits, monkeypatch):
    """The select tree on whole chunks of 64 values too, where a host with GFNI would not take it."""
    _check_planes(_planes, bits, 64)  # compiled for the host's own choice first
    assert ("vgf2p8affineqb" in "".join(_planes.inspect_asm().values())) == (HOST_PLANES == "gfni")
    monkeypatch.setattr(numba_vectors, "planes_isa", lambda context: "select")
    planes = njit(_planes.py_func)
    _check_planes(planes, bits, 64)
    assert "vgf2p8affineqb" not in "".join(planes.inspect_asm().values())


def test_the_decoders_name_a_wrong_array_or_a_bits_count_not_known_at_compile_time():
    dst = np.zeros(4 * DST_STRIDE, np.float32)
    with pytest.raises(TypingError, match="C-contiguous uint8"):
        _int8(SRC[::2], 0, SCALE_BITS, 0, 1, dst, 0)
    with pytest.raises(TypingError, match="C-contiguous float32"):
        _nibbles(SRC, 0, SCALE_BITS, 0, None, 1, dst.astype(np.float64), 0)
    with pytest.raises(TypingError, match="uint16 array"):
        _int8(SRC, 0, SCALE_BITS.astype(np.int32), 0, 1, dst, 0)

    @njit
    def runtime_bits(bits):
        planes_to_f32(SRC, 0, 0, SCALE_BITS, 0, 0, F16, 16, 1, dst, 0, 0, 2, bits, LEVELS)

    with pytest.raises(TypingError, match="bits must be a constant 1..4"):
        runtime_bits(3)
