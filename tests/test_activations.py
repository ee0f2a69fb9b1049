"""Activation quantization on tiny random models: the per-token formats' round trips and error
bounds, the spec grammar and its errors, f32 leaving the logits bit for bit, SmoothQuant's and the
Hadamard rotation's folds leaving the unquantized logits unchanged, GPTQ's Hessians mapped to the
folded inputs, and the composition with quantized weights."""
import dataclasses

import pytest
import torch

from quantbench.harness.activations import ActSpec, ActSpecError, bits_per_activation, prepare_activations
from quantbench.harness.activations.folding import FoldedModel
from quantbench.harness.activations.linear import input_overrides, overrides_installed
from quantbench.harness.activations.smoothing import input_maxima
from quantbench.harness.errors import UserError
from quantbench.harness.model import ModelConfig, load_model
from quantbench.harness.weights import Calibration, collect_hessians, quantize_weights
from quantbench.kernels import formats

CFG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, dim=128, hidden_dim=256, vocab_size=300,
                  max_seq_len=64)
FLOAT32_FOLD = 1e-5  # float32 logits (~0.1-1) of a model whose weights were rotated or rescaled in float64
CONFIGS = {"llama": CFG, "qwen2": dataclasses.replace(CFG, qkv_bias=True),
           "qwen3": dataclasses.replace(CFG, qk_norm=True, tie_embeddings=False, hidden_dim=96)}


@pytest.fixture(scope="module")
def model():
    return load_model(config=CFG)


def tokens(n=24, seed=1, batch=1):
    return torch.randint(CFG.vocab_size, (batch, n), generator=torch.Generator().manual_seed(seed))


def calibration():
    return Calibration(tokens(32, seed=2, batch=2), "random")


def logits_with(model, act):
    with act.installed(model):
        return model.logits(tokens())


@pytest.mark.parametrize("name, qmax", [("int8", 127), ("int4", 7)])
def test_per_token_integers_round_trip_within_half_a_step(name, qmax):
    fmt = formats.get(name)
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 64)
    packed = fmt.encode(x)
    step = x.abs().amax(-1, keepdim=True) / qmax
    y = fmt.decode(packed)
    assert y.shape == x.shape and bool(((y - x).abs() <= step / 2 * (1 + 1e-6)).all())
    assert torch.equal(packed["scales"], step.squeeze(-1))
    assert packed.nbytes == fmt.bytes_for(15, 64) and fmt.bits_per_value_for(64) == fmt.bits + 0.5
    codes = torch.round(x / step)  # every row's largest value takes the largest code
    assert torch.equal(codes.abs().amax(-1), torch.full((3, 5), float(qmax)))
    assert torch.equal(fmt.roundtrip(torch.zeros(2, 64)), torch.zeros(2, 64))
    assert torch.equal(fmt.roundtrip(y), y)  # decoded values are on the grid


def test_int4_packs_two_codes_per_byte():
    fmt = formats.get("int4")
    x = torch.tensor([[-7.0, 7.0, 1.0, 0.0]])
    assert fmt.encode(x)["codes"].tolist() == [[1 | 15 << 4, 9 | 8 << 4]]
    with pytest.raises(formats.FormatError, match="multiple of its block size 2"):
        fmt.encode(torch.ones(1, 5))


@pytest.mark.parametrize("spec", ["fp8_e4m3", "mxfp4", "int8"])
def test_a_format_quantizes_each_token_on_its_own(spec):
    x = torch.randn(2, 6, 128, generator=torch.Generator().manual_seed(3))
    x[0, 0] *= 1000  # an outlier token does not change the others
    fmt = formats.get(spec)
    assert torch.equal(fmt.roundtrip(x)[1], fmt.roundtrip(x[1]))


def test_spec_grammar_and_bits():
    spec = ActSpec("int8,k=int4,down@1=none,rotate=1,smooth=0.5")
    assert spec.text == "default=int8,k=int4,down@1=none,smooth=0.5,rotate=1" and spec.rotate and spec.smooth == 0.5
    inputs = spec.assign(CFG)
    assert "layers.1.w2" not in inputs and "tok_embeddings" not in inputs
    assert [(a, b, f.spec) for a, b, f in inputs["layers.0.wqkv"].ranges] == [(0, 128, "int8"), (128, 192, "int4"),
                                                                           (192, 256, "int8")]
    assert [f.spec for f in inputs["layers.0.wqkv"].formats()] == ["int8", "int4"]
    assert ActSpec("output=fp8_e4m3").assign(CFG).keys() == {"tok_embeddings"}  # tied: the output projection


def test_bits_weigh_each_input_by_its_length():
    inputs = ActSpec("int8,down=int4").assign(CFG)
    lengths = {"wqkv": 128, "wo": 128, "w13": 128, "w2": 256}
    expected = sum(2 * (8 + 32 / n if w != "w2" else 4 + 32 / n) * n for w, n in lengths.items()) / (2 * 640)
    assert bits_per_activation(inputs) == (pytest.approx(expected), 8)


@pytest.mark.parametrize("text, message", [
    ("int8,smooth=1.5", "smooth='1.5' is not a migration strength between 0 and 1"),
    ("int8,rotate=yes", "rotate='yes': expected 0 or 1"),
    ("embeddings=int8", "unknown role 'embeddings'"),
    ("int9", "item 'int9' is neither target=format nor a format"),
    ("rotate=1", "has no target=format item"),
    ("q@7=int8", "layer 7 does not exist"),
    ("default=none", "quantizes no matmul input"),
    ("q=mxfp4:group=48", "group size 48"),
    ("q=q4_0_rot:group=256", r"the input of q@0 \(layers.0.wqkv, length 128\) cannot take"),
    ("", "non-empty string"),
])
def test_bad_specs_name_the_problem(text, message):
    with pytest.raises(ActSpecError, match=message):
        ActSpec(text).assign(CFG)
    assert issubclass(ActSpecError, UserError)


def test_f32_leaves_the_logits_bit_for_bit(model):
    before = model.logits(tokens())
    assert torch.equal(logits_with(model, prepare_activations(model, "default=f32,output=f32")), before)
    assert not model.transformer.linear_overrides and not model.transformer.weight_overrides


@pytest.mark.parametrize("arch", sorted(CONFIGS))
@pytest.mark.parametrize("spec", ["f32,rotate=1", "default=f32,output=f32,smooth=0.5",
                                  "default=f32,output=f32,smooth=0.8,rotate=1"])
def test_folds_leave_the_unquantized_logits_unchanged(arch, spec):
    tiny = load_model(config=CONFIGS[arch])
    before = tiny.logits(tokens())
    act = prepare_activations(tiny, spec, calibration=calibration(), progress=False)
    assert act.folded is not None and (act.folded.rotated or act.folded.smoothed)
    folded = logits_with(tiny, act)
    assert (folded - before).abs().max() <= FLOAT32_FOLD
    assert torch.equal(tiny.logits(tokens()), before)  # and the model is restored


def test_what_is_folded_and_what_runs_online(model):
    rotated = prepare_activations(model, "int8,rotate=1").folded
    assert rotated.at_run_time("layers.0.w2") is not None  # down's rotation
    assert all(rotated.at_run_time(f"layers.0.{w}") is None for w in ("wqkv", "wo", "w13"))
    assert rotated.table is not None and torch.equal(rotated.norms["layers.0.attn_norm"], torch.ones(128))
    smoothed = prepare_activations(model, "int8,smooth=0.5", calibration=calibration(), progress=False).folded
    assert smoothed.at_run_time("layers.0.wo") is not None and smoothed.at_run_time("layers.0.wqkv") is None
    s = smoothed.changes["layers.0.wqkv"].scale.float()
    gain = model.transformer.w["layers_0_attn_norm"]
    assert torch.allclose(smoothed.norms["layers.0.attn_norm"] * s, gain, rtol=1e-6)
    assert torch.allclose(smoothed.weight("layers.0.wqkv") / s, model.transformer.w["layers_0_wqkv"], rtol=1e-5)


def test_smoothing_flattens_the_input_channels(model):
    act = prepare_activations(model, "int8,smooth=1.0", calibration=calibration(), progress=False)
    # alpha 1: s = max|X|, so every smoothed channel's calibration max becomes 1
    maxima = input_maxima(model, ["layers.1.w13"], calibration().tokens, act.folded, progress=False)
    assert torch.allclose(maxima["layers.1.w13"], torch.ones(128), rtol=1e-4)


def test_hessians_map_to_the_folded_inputs(model):
    calib = calibration()
    names = ["layers.0.wqkv", "layers.1.wo", "layers.1.w2", "tok_embeddings"]
    original = collect_hessians(model, calib.tokens, names, progress=False)
    folded = prepare_activations(model, "default=f32,output=f32,smooth=0.5,rotate=1", calibration=calib,
                                 progress=False).folded
    recorders = {name: _Gram() for name in names}
    linear = input_overrides(model, {n: [(0, 10 ** 6, recorders[n])] for n in names}, folded, {})
    with overrides_installed(model, linear, folded.table, folded.norms):
        for i in range(calib.tokens.shape[0]):
            model.logits(calib.tokens[i:i + 1])
    for name in names:
        direct = recorders[name].hessian()
        assert torch.allclose(folded.hessian(name, original[name]), direct, atol=1e-5 * float(direct.abs().max()))


class _Gram:
    def __init__(self):
        self.sum, self.count = 0, 0

    def __call__(self, x):
        flat = x.reshape(-1, x.shape[-1]).double()
        self.sum, self.count = self.sum + flat.T @ flat, self.count + flat.shape[0]
        return x

    def hessian(self):
        return 2 * self.sum / self.count


def test_activations_wrap_the_quantized_weights(model):
    act = prepare_activations(model, "int8")
    qw = quantize_weights(model, "q4_0", progress=False)
    both = act.with_weights(qw)
    with qw.installed(model):
        weights_only = model.logits(tokens())
    mixed = logits_with(model, both)
    assert both.label == "w:default=q4_0|a:default=int8" and both.variant == "rtn"
    assert 0 < (mixed - weights_only).abs().max() < 0.1 * float(weights_only.abs().max())
    dense_input = prepare_activations(model, "f32").with_weights(qw)
    assert torch.equal(logits_with(model, dense_input), weights_only)  # f32 over weights: just the weights
    assert both.row_fields("f16", "dequant_sdpa")["format"] == "w:default=q4_0|a:default=int8|kv:f16"


def test_rotated_weights_quantize_the_folded_model(model):
    act = prepare_activations(model, "f32,rotate=1")
    qw = quantize_weights(model, "q8_0", progress=False, folded=act.folded)
    with pytest.raises(UserError, match="quantized for another model"):
        act.with_weights(quantize_weights(model, "q8_0", progress=False))
    rotated_q8 = logits_with(model, act.with_weights(qw))
    with quantize_weights(model, "q8_0", progress=False).installed(model):
        plain_q8 = model.logits(tokens())
    reference = model.logits(tokens())
    assert (rotated_q8 - plain_q8).abs().max() > 0  # other weights were quantized
    assert (rotated_q8 - reference).abs().max() < 0.05 * float(reference.abs().max())
    with pytest.raises(UserError, match="embedding table cannot be quantized"):
        act.with_weights(quantize_weights(model, "q8_0,output=q8_0", progress=False, folded=act.folded))


def test_gptq_runs_on_the_folded_model(model):
    act = prepare_activations(model, "int4,rotate=1")
    calib = calibration()
    qw = quantize_weights(model, "q4_0", "gptq", calibration=calib, progress=False, folded=act.folded)
    assert torch.isfinite(logits_with(model, act.with_weights(qw))).all()


def test_fused_rows_with_different_formats_run_once_per_format(model):
    mixed = prepare_activations(model, "q=int4,k=int8,v=none")
    q_only = prepare_activations(model, "q=int4")
    k_only = prepare_activations(model, "k=int8")
    t = model.transformer
    h = torch.randn(1, 5, 128, generator=torch.Generator().manual_seed(4))
    outs = {}
    for name, act in (("mixed", mixed), ("q", q_only), ("k", k_only)):
        with act.installed(model):
            outs[name] = t.linear_overrides["layers.0.wqkv"](h)
    dense = torch.nn.functional.linear(h, t.w["layers_0_wqkv"])
    assert torch.equal(outs["mixed"][..., :128], outs["q"][..., :128])
    assert torch.equal(outs["mixed"][..., 128:192], outs["k"][..., 128:192])
    assert torch.equal(outs["mixed"][..., 192:], dense[..., 192:])


def test_installing_twice_is_refused(model):
    act = prepare_activations(model, "int8")
    with act.installed(model):
        with pytest.raises(UserError, match="already has quantized"):
            with act.installed(model):
                pass
    assert not model.transformer.linear_overrides


def test_folded_model_keeps_unchanged_weights_shared(model):
    folded = FoldedModel(model, scales={"layers.0.wo": torch.ones(128, dtype=torch.float64)})
    assert folded.weight("layers.1.wo") is model.transformer.w["layers_1_wo"]
    assert not folded.changes_embeddings()
