import pytest
import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError


def test_names_lists_baselines_first():
    assert formats.names()[:3] == ["f32", "f16", "bf16"]


@pytest.mark.parametrize("name", ["f32", "f16", "bf16"])
def test_float_baselines_roundtrip(name):
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    fmt = formats.get(name)
    y = fmt.decode(fmt.encode(x))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, x.to(fmt.dtype).float())
    assert fmt.bits_per_value == {"f32": 32, "f16": 16, "bf16": 16}[name]


def test_unknown_format_names_the_known_ones():
    with pytest.raises(FormatError, match="unknown format 'q3_x'.*f32"):
        formats.get("q3_x")


def test_bad_spec_and_unknown_option():
    with pytest.raises(FormatError, match="not key=value"):
        formats.get("f16:oops")
    with pytest.raises(FormatError, match="has no option group"):
        formats.get("f16:group=64")
    with pytest.raises(FormatError, match="non-empty string"):
        formats.get("")


@pytest.mark.parametrize("bad, message", [
    (torch.ones(4, 64, dtype=torch.int32), "floating-point"),
    (torch.tensor([[1.0, float("nan")] * 32]), "NaN or Inf"),
    (torch.tensor([[1.0, float("inf")] * 32]), "NaN or Inf"),
    (torch.ones(4, 0), "non-empty last dimension"),
    ([1.0, 2.0], "torch.Tensor"),
])
def test_bad_input_is_named(bad, message):
    with pytest.raises(FormatError, match=message):
        formats.get("f16").encode(bad)


def test_decode_refuses_data_of_another_format():
    packed = formats.get("f16").encode(torch.ones(2, 32))
    with pytest.raises(FormatError, match="packed as f16"):
        formats.get("bf16").decode(packed)


def test_packed_nbytes_is_storage():
    packed = formats.get("f16").encode(torch.ones(3, 64))
    assert packed.nbytes == 3 * 64 * 2
