"""llama.cpp block formats against the `gguf` package's independent implementation.

gguf.quants mirrors ggml-quants.c's reference quantizers in numpy; its bytes are GGUF blocks.
"""
import math

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.rotation import rotate

QTYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0, "q4_1": GGMLQuantizationType.Q4_1}
BITS = {"q8_0": 8.5, "q4_0": 4.5, "q4_1": 5.0}


def gguf_bytes(name, x):
    return gguf_quantize(x.numpy(), QTYPES[name]).tobytes()


def assert_matches_gguf(name, x):
    fmt = formats.get(name)
    packed = fmt.encode(x)
    ours = fmt.to_gguf_bytes(packed)
    theirs = gguf_bytes(name, x)
    assert len(ours) == len(theirs) == fmt.bytes_for(x.numel() // x.shape[-1], x.shape[-1])
    if ours != theirs:
        per_block = fmt.block_bytes
        bad = [i // per_block for i in range(len(ours)) if ours[i] != theirs[i]]
        pytest.fail(f"{name}: {len(bad)} bytes differ from gguf, first in block {bad[0]}")
    raw = np.frombuffer(theirs, dtype=np.uint8).reshape(-1, fmt.block_bytes)
    expected = gguf_dequantize(raw, QTYPES[name]).reshape(x.shape)
    assert np.array_equal(fmt.decode(packed).numpy(), expected)


def blocks(*rows):
    """A [1, 32 n] float32 tensor, one block per given row (rows shorter than 32 repeat)."""
    out = []
    for row in rows:
        row = list(row)
        out.extend((row * (32 // len(row) + 1))[:32])
    return torch.tensor([out], dtype=torch.float32)


@pytest.mark.parametrize("name", list(QTYPES))
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
def test_random_data_matches_gguf(name, scale):
    g = torch.Generator().manual_seed(7)
    assert_matches_gguf(name, torch.randn(3, 5, 128, generator=g) * scale)
    assert_matches_gguf(name, torch.rand(17, 96, generator=g) * scale)  # all positive


@pytest.mark.parametrize("name", list(QTYPES))
def test_edge_cases_match_gguf(name):
    g = torch.Generator().manual_seed(1)
    huge = (torch.rand(4, 32, generator=g) * 5e4 + 1e4) * torch.where(torch.rand(4, 32, generator=g) < 0.5, -1, 1)
    tiny = torch.randn(2, 32, generator=g) * 1e-7
    edge = torch.cat([
        blocks([0.0]),                                              # all-zero block
        blocks([127.0, 0.5, -0.5, 2.5, -2.5, 126.5, -126.5, 1.5]),  # q8_0: d = 1, exact .5 ties
        blocks([-8.0, 0.5, -0.5, 6.5, 7.5, -7.5, 3.5]),             # q4_0: d = 1, exact .5 ties
        blocks([0.0, 15.0, 0.5, 14.5, 7.5, 1.5, 13.5]),             # q4_1: d = 1, m = 0, exact .5 ties
        blocks([1.0, -3.0, 2.0, 0.25]),                             # largest magnitude is negative
        blocks([3.0, 1.0, -3.0, 2.0]),                              # +a before -a of equal magnitude
        blocks([-3.0, 1.0, 3.0, 2.0]),                              # -a before +a
        blocks([5.0, 5.0, 5.0, 5.0]),                               # constant block: d = 0 for q4_1
        blocks([-1e-7, 3e-8, 1e-7, -2e-8]),
        huge, tiny,
    ])
    assert_matches_gguf(name, edge)


def test_q8_0_rounds_ties_away_from_zero():
    fmt = formats.get("q8_0")
    packed = fmt.encode(blocks([127.0, 0.5, -0.5, 2.5, -2.5, 1.5]))
    assert float(packed["d"][0]) == 1.0
    assert packed["qs"][0, 0, :6].tolist() == [127, 1, -1, 3, -3, 2]


def test_q4_nibble_order_and_offsets():
    x = torch.arange(32, dtype=torch.float32).reshape(1, 32) - 16  # -16..15: max magnitude -16
    packed = formats.get("q4_0").encode(x)
    assert float(packed["d"][0, 0]) == 2.0  # d = -16 / -8
    q = [min(15, int(v / 2.0 + 8.5)) for v in x[0].tolist()]
    assert packed["qs"][0, 0].tolist() == [q[j] | (q[j + 16] << 4) for j in range(16)]


def test_signed_zeros_follow_ggml():
    """ggml's loops start from +0.0 (q4_0) and keep the first zero (q4_1): the sign bits of d and m."""
    neg_zero = blocks([-0.0])
    assert formats.get("q4_0").encode(neg_zero)["d"].view(torch.int16).item() == -32768  # d = +0 / -8 = -0
    assert formats.get("q8_0").encode(neg_zero)["d"].view(torch.int16).item() == 0
    q4_1 = formats.get("q4_1")
    assert q4_1.encode(blocks([-0.0, 0.0, 1.0]))["m"].view(torch.int16).item() == -32768
    assert q4_1.encode(blocks([0.0, -0.0, 1.0]))["m"].view(torch.int16).item() == 0
    mixed_zeros = q4_1.encode(blocks([-0.0, 0.0], [0.0] * 8 + [-0.0] * 24))
    assert mixed_zeros["d"].view(torch.int16).tolist() == [[0, 0]]
    assert mixed_zeros["m"].view(torch.int16).tolist() == [[-32768, 0]]


@pytest.mark.parametrize("name", list(QTYPES))
def test_gguf_bytes_round_trip(name):
    fmt = formats.get(name)
    x = torch.randn(6, 2, 64, generator=torch.Generator().manual_seed(3))
    data = gguf_bytes(name, x)
    packed = fmt.from_gguf_bytes(data, x.shape)
    assert packed.format == fmt.spec and packed.shape == tuple(x.shape)
    assert fmt.to_gguf_bytes(packed) == data
    reference = fmt.encode(x)
    for field, value in reference.fields.items():
        assert packed[field].dtype == value.dtype and torch.equal(packed[field].view(torch.uint8).reshape(-1),
                                                                   value.view(torch.uint8).reshape(-1)), field
    with pytest.raises(FormatError, match="bytes do not hold shape"):
        fmt.from_gguf_bytes(data[:-1], x.shape)


@pytest.mark.parametrize("name", list(QTYPES))
def test_bits_and_storage_are_exact(name):
    fmt = formats.get(name)
    assert fmt.bits_per_value == fmt.bits_per_value_for(4096) == BITS[name]
    packed = fmt.encode(torch.randn(10, 64))
    assert packed.nbytes == fmt.bytes_for(10, 64) == 10 * 64 * BITS[name] / 8
    assert fmt.family == "block" and fmt.block == 32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_inputs_encode_their_float32_values(dtype):
    x = torch.randn(4, 64).to(dtype)
    fmt = formats.get("q4_1")
    assert fmt.to_gguf_bytes(fmt.encode(x)) == gguf_bytes("q4_1", x.float())


@pytest.mark.parametrize("name", list(QTYPES) + ["q8_0_rot", "q4_0_rot"])
@pytest.mark.parametrize("bad, message", [
    (torch.ones(4, 48), "not a multiple of its block size 32|not a power of two"),
    (torch.ones(4, 64, dtype=torch.int32), "floating-point"),
    (torch.tensor([[1.0, float("nan")] * 32]), "NaN or Inf"),
    (torch.tensor([[1.0, float("-inf")] * 32]), "NaN or Inf"),
])
def test_bad_input_is_named(name, bad, message):
    with pytest.raises(FormatError, match=message):
        formats.get(name).encode(bad)


@pytest.mark.parametrize("name, value", [("q8_0", 1e7), ("q4_0", 6e5), ("q4_1", -7e4)])
def test_scale_overflowing_float16_is_an_error(name, value):
    x = torch.ones(2, 32)
    x[1, 3] = value
    with pytest.raises(FormatError, match="values too large"):
        formats.get(name).encode(x)


# ---- rotated block formats ----------------------------------------------------------------------
def outlier_channels(rows=512, dim=128):
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(5))
    x[:, [5, 70]] *= 40  # a few outlier channels, as in real K caches
    return x


def relative_mse(fmt, x):
    return float((fmt.roundtrip(x) - x).pow(2).mean() / x.pow(2).mean())


@pytest.mark.parametrize("plain, rotated", [("q8_0", "q8_0_rot"), ("q4_0", "q4_0_rot"),
                                            ("q4_0", "q4_0_rot:group=32"), ("q4_0", "q4_0_rot:signs=0")])
def test_rotation_lowers_error_on_outlier_channels(plain, rotated):
    x = outlier_channels()
    assert relative_mse(formats.get(rotated), x) < 0.5 * relative_mse(formats.get(plain), x)


@pytest.mark.parametrize("spec, group", [("q8_0_rot", 128), ("q4_0_rot:group=64", 64), ("q4_0_rot:signs=0", 128)])
def test_rotated_blocks_are_the_blocks_of_the_rotated_values(spec, group):
    fmt = formats.get(spec)
    x = torch.randn(8, 128, generator=torch.Generator().manual_seed(2))
    packed = fmt.encode(x)
    data = fmt.to_gguf_bytes(packed)
    assert data == gguf_bytes(spec.split("_rot")[0], rotate(x, group, fmt.signs))
    again = fmt.from_gguf_bytes(data, x.shape)
    assert torch.equal(fmt.decode(again), fmt.decode(packed))
    assert fmt.rotation_flops(128) == math.log2(group) + 1
    assert fmt.bits_per_value == BITS[spec.split("_rot")[0]]


def test_rotated_round_trip_is_close_and_orthonormal():
    fmt = formats.get("q8_0_rot")
    x = torch.randn(16, 256, generator=torch.Generator().manual_seed(4))
    y = fmt.roundtrip(x)
    assert y.shape == x.shape
    assert relative_mse(fmt, x) < 1e-4  # q8_0's own error level on Gaussian data: about 3e-5


def test_rotated_specs_are_canonical():
    assert formats.get("q8_0_rot:signs=1").spec == "q8_0_rot"
    assert formats.get("q4_0_rot", group=64, signs=False).spec == "q4_0_rot:group=64:signs=0"
    packed = formats.get("q8_0_rot").encode(torch.randn(2, 64))
    assert formats.get("q8_0_rot:signs=1").decode(packed).shape == (2, 64)
    with pytest.raises(FormatError, match="packed as q8_0_rot"):
        formats.get("q8_0").decode(packed)


@pytest.mark.parametrize("spec, dim, message", [
    ("q4_0_rot:group=48", 96, "group size 48 is not a power of two"),
    ("q4_0_rot:group=512", 512, "group size 512 is not a power of two"),
    ("q8_0_rot:group=16", 64, "group size 16 is not a power of two"),
    ("q8_0_rot", 96, "group size 96 is not a power of two"),
    ("q8_0_rot", 512, "group size 512 is not a power of two"),
    ("q4_0_rot:group=64", 96, "not a multiple of the group size 64"),
])
def test_rotated_bad_group_is_named(spec, dim, message):
    with pytest.raises(FormatError, match=message):
        formats.get(spec).encode(torch.ones(2, dim))
