"""GPTQ with the formats' own quantizers: it lowers the layer-output error it minimizes compared
with round-to-nearest, its packed result decodes to exactly what it chose, and its options work."""
import pytest
import torch

from quantbench.harness.weights import GPTQOptions, gptq_quantize, rtn_quantize
from quantbench.harness.weights.gptq import _gptq_columns
from quantbench.harness.weights.inner import inner_quantizer
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

ROWS, IN, TOKENS = 48, 128, 384


@pytest.fixture(scope="module")
def layer():
    """A small layer whose inputs have correlated channels of unequal scale (as real activations do)."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(IN, IN, generator=gen) / IN ** 0.5 + torch.eye(IN)
    x = torch.randn(TOKENS, IN, generator=gen) @ mix * torch.linspace(0.2, 3.0, IN)
    w = torch.randn(ROWS, IN, generator=gen) * 0.05
    return x, w, 2 * x.double().T @ x.double()


def output_error(x, w, w_hat) -> float:
    return float((x @ (w - w_hat).T).norm() / (x @ w.T).norm())


@pytest.mark.parametrize("spec", ["q4_0", "turbo3:group=64", "turbo3", "q4_1", "q4_0_rot:group=64"])
@pytest.mark.parametrize("options", [GPTQOptions(), GPTQOptions(act_order=True)], ids=["natural", "act_order"])
def test_gptq_lowers_the_layer_output_error_vs_rtn(layer, spec, options):
    x, w, h = layer
    fmt = formats.get(spec)
    rtn = output_error(x, w, rtn_quantize(w, fmt).dequantized())
    gptq = output_error(x, w, gptq_quantize(w, h, fmt, options).dequantized())
    assert gptq < 0.95 * rtn, (spec, options.label, gptq, rtn)


@pytest.mark.parametrize("spec", ["q8_0", "q4_0", "q4_1", "turbo3:group=32", "turbo2:group=64", "turbo4_mse",
                                  "q8_0_rot"])
def test_packed_result_decodes_to_what_gptq_chose(layer, spec):
    x, w, h = layer
    fmt = formats.get(spec)
    inner = inner_quantizer(fmt, IN)
    m = inner.rotation()
    wd, hd = (w.double(), h.clone()) if m is None else (w.double() @ m.double(), m.double().T @ h @ m.double())
    q, codes, params = _gptq_columns(wd, hd, inner, GPTQOptions())
    expected = q if m is None else q @ m.double().T
    decoded = fmt.decode(inner.pack(codes, params)).double()
    # the chosen values are float32 products of an fp16 side value and a level; the rotation back is a
    # float32 FWHT of length <= 128 (7 butterfly stages): a few float32 ulps of the row scale
    scale = expected.abs().amax(dim=1, keepdim=True)
    assert ((decoded - expected).abs() / scale).max() < 64 * torch.finfo(torch.float32).eps


def test_channel_scaling_is_identity_preserving_and_counted(layer):
    x, w, h = layer
    fmt = formats.get("q4_0")
    qt = gptq_quantize(w, h, fmt, GPTQOptions(alpha=0.25))
    s = qt.input_scale
    assert s.dtype == torch.float16 and s.shape == (IN,)
    assert float(s.double().log().mean().exp()) == pytest.approx(1.0, abs=1e-2)  # geometric mean 1, fp16-rounded
    # the layer computes (x / s) @ decode(packed)^T: the same as x @ dequantized()^T
    via_scale = (x / s.float()) @ fmt.decode(qt.packed).T
    assert torch.allclose(via_scale, x @ qt.dequantized().T, rtol=1e-4, atol=1e-5)
    assert qt.side_bits == 16 * IN
    assert output_error(x, w, qt.dequantized()) < output_error(x, w, rtn_quantize(w, fmt).dequantized())


def test_gptq_refuses_what_it_cannot_do(layer):
    x, w, h = layer
    with pytest.raises(FormatError, match="no per-value inner quantizer"):
        gptq_quantize(w, h, formats.get("turbo4:group=64"))
    with pytest.raises(FormatError, match="does not match weights"):
        gptq_quantize(w, h[:64, :64], formats.get("q4_0"))
    with pytest.raises(FormatError, match="not a multiple"):
        gptq_quantize(w[:, :96], h[:96, :96], formats.get("turbo3:group=64"))
    with pytest.raises(FormatError, match="dampening"):
        GPTQOptions(damp=0)


def test_dead_input_channels_get_zero_weight(layer):
    x, w, h = layer
    h = h.clone()
    h[5, :] = 0
    h[:, 5] = 0
    qt = gptq_quantize(w, h, formats.get("q8_0"))
    assert torch.all(qt.dequantized()[:, 5] == 0)
