"""The turbo formats (kernels/formats/turbo.py): codebooks, distortion, norm correction, turbo4's
unbiased inner products, the packed layout, options and bad input."""
import math

import pytest
import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError, lloyd_max
from quantbench.kernels.formats.turbo import unpack_bit_planes

LLOYD_MAX_MSE = {2: 0.1175, 3: 0.03455}  # published values for N(0,1) (Max 1960)


def gaussian(rows, dim, seed=0):
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def nmse(spec, x):
    y = formats.get(spec).roundtrip(x).double()
    x = x.double()
    return float(((y - x) ** 2).sum() / (x ** 2).sum())


@pytest.mark.parametrize("bits", [2, 3])
def test_codebook_converged_to_the_lloyd_max_quantizer(bits):
    levels = torch.tensor(lloyd_max.gaussian_levels(bits), dtype=torch.float64)
    assert torch.allclose(levels, -levels.flip(0), atol=1e-9, rtol=0)
    assert lloyd_max.gaussian_mse(bits) == pytest.approx(LLOYD_MAX_MSE[bits], abs=1e-3)
    # the format's own float32 codebook for N(0, 1/g), scaled back to N(0,1): MSE by quadrature
    g = 128
    fmt = formats.get(f"turbo{bits}")
    t = torch.linspace(-9, 9, 2_000_001, dtype=torch.float64)
    code = torch.bucketize(t, fmt.boundaries(g).double() * math.sqrt(g))
    err = (t - fmt.codebook(g).double()[code] * math.sqrt(g)) ** 2
    mse = float(torch.trapezoid(err * torch.exp(-t * t / 2) / math.sqrt(2 * math.pi), t))
    assert mse == pytest.approx(LLOYD_MAX_MSE[bits], abs=1e-3)


# Max (1960): the MSE of the 1- to 4-bit Lloyd-Max quantizers of N(0,1)
MAX_1960_MSE = {1: 0.3634, 2: 0.1175, 3: 0.03455, 4: 0.0095}


@pytest.mark.parametrize("bits", range(1, 9))
def test_gaussian_levels_are_a_fixed_point_of_lloyds_iteration(bits):
    levels = torch.tensor(lloyd_max.gaussian_levels(bits), dtype=torch.float64)
    step, _ = lloyd_max._lloyd_step(levels)
    assert (step - levels).abs().max() < 1e-10  # each level the mean of its cell, to the tolerance
    assert torch.all(levels[1:] > levels[:-1]) and torch.allclose(levels, -levels.flip(0), atol=1e-10, rtol=0)
    if bits in MAX_1960_MSE:
        assert lloyd_max.gaussian_mse(bits) == pytest.approx(MAX_1960_MSE[bits], rel=2e-3)


@pytest.mark.parametrize("spec, bits", [("turbo2", 2), ("turbo3", 3), ("turbo4_mse", 4)])
def test_distortion_on_gaussian_data_is_near_the_lloyd_max_optimum(spec, bits):
    ratio = nmse(spec, gaussian(4096, 128)) / lloyd_max.gaussian_mse(bits)
    assert abs(ratio - 1) < 0.05, ratio


def test_rotation_is_what_makes_outlier_channels_quantizable():
    x = gaussian(2048, 128)
    x[:, [5, 77]] *= 25  # two outlier channels, as in real K caches
    rotated, unrotated = nmse("turbo3", x), nmse("turbo3:rotate=0", x)
    assert rotated < 1.1 * lloyd_max.gaussian_mse(3)
    assert unrotated > 5 * rotated


def test_norm_correction_keeps_each_group_norm_to_fp16_precision():
    x = gaussian(512, 128) * 3
    for spec in ("turbo2:group=32", "turbo3", "turbo4_mse:group=64"):
        fmt = formats.get(spec)
        g = fmt.group_for(128)
        ratio = fmt.roundtrip(x).reshape(-1, g).norm(dim=-1) / x.reshape(-1, g).norm(dim=-1)
        assert float((ratio - 1).abs().max()) <= 2 ** -11 + 1e-6, spec  # fp16 rounding of the stored norm
    shrunk = formats.get("turbo3:norm_correction=0").roundtrip(x).norm(dim=-1) / x.norm(dim=-1)
    assert float(shrunk.mean()) < 0.99  # without it the reconstruction loses about D/2 of the norm


def test_turbo4_inner_products_are_unbiased_where_turbo3_shrinks_them():
    gen = torch.Generator().manual_seed(100)
    x = torch.randn(4096, 128, generator=gen)
    q = x + torch.randn(4096, 128, generator=gen)  # queries correlated with the keys
    exact = (q.double() * x.double()).sum(-1)

    def relative_errors(spec):
        estimate = (q.double() * formats.get(spec).roundtrip(x).double()).sum(-1)
        return (estimate - exact) / exact

    turbo4 = relative_errors("turbo4")
    turbo3 = relative_errors("turbo3")
    sem4 = float(turbo4.std()) / math.sqrt(len(turbo4))
    assert abs(float(turbo4.mean())) < 4 * sem4
    assert float(turbo3.mean()) < -0.01
    assert abs(float(turbo4.mean())) < abs(float(turbo3.mean())) / 5


def test_bit_planes_hold_the_codes_as_documented():
    fmt = formats.get("turbo3:group=32:rotate=0:signs=0")
    x = gaussian(4, 64)
    packed = fmt.encode(x)
    assert packed["codes"].shape == (4, 2, 3, 4) and packed["codes"].dtype == torch.uint8
    groups = x.reshape(4, 2, 32)
    expected = torch.bucketize(groups / groups.norm(dim=-1, keepdim=True), fmt.boundaries(32))
    planes = packed["codes"].to(torch.int64)
    i = torch.arange(32)
    by_hand = sum(((planes[:, :, k, i // 8] >> (i % 8)) & 1) << k for k in range(3))
    assert torch.equal(by_hand, expected)
    assert torch.equal(unpack_bit_planes(packed["codes"], 32), expected)


@pytest.mark.parametrize("spec, dim, bits", [
    ("turbo2", 128, 2 + 16 / 128),
    ("turbo3:group=64", 128, 3 + 16 / 64),
    ("turbo4", 64, 4 + 32 / 64),
    ("turbo4_mse:group=32", 256, 4 + 16 / 32),
])
def test_bits_per_value_is_the_exact_storage(spec, dim, bits):
    fmt = formats.get(spec)
    assert fmt.bits_per_value_for(dim) == bits
    x = gaussian(6, dim)
    assert fmt.encode(x).nbytes * 8 == bits * x.numel() == fmt.bytes_for(6, dim) * 8


def test_options_parse_and_round_trip_through_the_spec():
    fmt = formats.get("turbo3:group=64:rotate=0")
    assert (fmt.group, fmt.rotate, fmt.signs, fmt.norm_correction) == (64, False, True, True)
    assert fmt.spec == "turbo3:group=64:rotate=0"
    assert formats.get(fmt.spec).spec == fmt.spec
    assert formats.get("turbo2", norm_correction=False).spec == "turbo2:norm_correction=0"
    assert formats.get("turbo4:group=128").spec == "turbo4:group=128"
    assert formats.options_of("turbo4") == {"group": None, "rotate": True, "signs": True, "norm_correction": True,
                                            "levels": "gaussian"}
    assert fmt.rotation_flops(128) == 0
    assert formats.get("turbo3").rotation_flops(128) == 8 and formats.get("turbo3:group=64").rotation_flops(128) == 7
    assert formats.get("turbo4").decode_flops(64) > formats.get("turbo3").decode_flops(64)


def test_shapes_and_zero_groups():
    fmt = formats.get("turbo4:group=32")
    x = gaussian(6, 64).reshape(2, 3, 64)
    x[0, 1] = 0.0
    packed = fmt.encode(x)
    assert packed.shape == (2, 3, 64)
    assert packed["norms"].shape == (2, 3, 2) and packed["qjl"].shape == (2, 3, 2, 4)
    y = fmt.decode(packed, dtype=torch.float16)
    assert y.shape == x.shape and y.dtype == torch.float16
    assert bool((y[0, 1] == 0).all())


@pytest.mark.parametrize("spec, x, message", [
    ("turbo3:group=48", None, "not a power of two between 32 and 256"),
    ("turbo3:group=512", None, "not a power of two between 32 and 256"),
    ("turbo3:group=16", None, "not a power of two between 32 and 256"),
    ("turbo3:group=abc", None, "not a number"),
    ("turbo3:rotate=maybe", None, "not a boolean"),
    ("turbo3:bits=4", None, "has no option bits"),
    ("turbo3:group=64", torch.ones(2, 96), "not a multiple of the group size 64"),
    ("turbo3", torch.ones(2, 96), "group = the whole last dimension"),
    ("turbo2", torch.tensor([[1.0, float("nan")] * 32]), "NaN or Inf"),
    ("turbo4", torch.ones(2, 64, dtype=torch.int32), "floating-point"),
    ("turbo3", torch.full((1, 128), 1e4), "exceeds the fp16 range"),
])
def test_bad_input_is_named(spec, x, message):
    with pytest.raises(FormatError, match=message):
        formats.get(spec).encode(x)
