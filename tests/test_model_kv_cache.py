"""Quantized KV cache: logits with K/V stored through a format equal the float64 reference with
K (after RoPE) and V passed through the same format's round trip; policies per layer and side."""
import pytest
import torch
from model_helpers import random_hf_weights, reference_logits, tiny_hf_config, write_hf_dir

from quantbench.harness.errors import UserError
from quantbench.harness.model import ContextLengthError, load_model, parse_kv_policy
from quantbench.harness.model.attention import attention_names
from quantbench.harness.model.kv_cache import cache_problem
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError

TOKENS = [5, 17, 200, 3, 99, 42, 42, 7, 255, 1, 64, 128, 9, 33, 77, 250]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = tiny_hf_config("llama")
    weights = random_hf_weights(cfg, seed=11)
    folder = tmp_path_factory.mktemp("kv") / "hf"
    write_hf_dir(folder, cfg, weights)
    return cfg, weights, load_model(folder)


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("name", formats.names())
def test_cache_format_matches_reference_roundtrip(tiny, name):
    cfg, weights, model = tiny
    fmt = formats.get(name)
    problem = cache_problem(fmt, cfg["head_dim"])
    if problem and "super-blocks" in problem:  # a k-quant cannot hold a head's row: the cache refuses it
        with pytest.raises(FormatError, match="not a multiple of 256"):
            model.logits(torch.tensor([TOKENS]), kv=parse_kv_policy(name, n_layers=cfg["num_hidden_layers"]))
        return
    if problem:  # a per-tensor scale: the cache says so, and the per-row option works instead
        assert "per-row fields" in problem and name == "nvfp4"
        with pytest.raises(FormatError, match="per-row fields"):
            model.logits(torch.tensor([TOKENS]), kv=parse_kv_policy(name, n_layers=cfg["num_hidden_layers"]))
        name = "nvfp4:scale=row"
        fmt = formats.get(name)
    exact = reference_logits(cfg, weights, TOKENS)[None]
    expected = reference_logits(cfg, weights, TOKENS, fmt.roundtrip, fmt.roundtrip)[None]
    got = model.logits(torch.tensor([TOKENS]), kv=parse_kv_policy(name, n_layers=cfg["num_hidden_layers"]))
    scale = exact.abs().max().item()
    # float32 arithmetic may move a value across a quantization boundary now and then: allow a
    # small fraction of the error the format itself makes, and float32 rounding for lossless ones
    assert _max_err(got, expected) <= max(0.02 * _max_err(expected, exact), 1e-5 * scale)


def test_layer_and_side_policy(tiny):
    cfg, weights, model = tiny
    f16, bf16 = formats.get("f16"), formats.get("bf16")
    tokens = torch.tensor([TOKENS])
    asym = model.logits(tokens, kv=parse_kv_policy(k="bf16", v="f16", n_layers=2))
    expected = reference_logits(cfg, weights, TOKENS, bf16.roundtrip, f16.roundtrip)[None]
    assert _max_err(asym, expected) <= 1e-5 * expected.abs().max().item()
    # bf16 in layer 1 only differs from bf16 everywhere and from f16 everywhere
    mixed = model.logits(tokens, kv="f16,last1=bf16")
    assert model.new_cache(1, 4, kv="f16,last1=bf16").layers[1][0].format.name == "bf16"
    assert _max_err(mixed, model.logits(tokens, kv="bf16")) > 0
    assert _max_err(mixed, model.logits(tokens, kv="f16")) > 0


def test_quantized_decode_matches_quantized_prefill(tiny):
    _, _, model = tiny
    tokens = torch.tensor([TOKENS])
    name = "q8_0" if "q8_0" in formats.names() else "bf16"
    full = model.logits(tokens, kv=name)
    cache = model.new_cache(1, len(TOKENS), kv=name)
    steps = [model.forward(tokens[:, :6], cache, 0)]
    steps += [model.forward(tokens[:, i:i + 1], cache, i) for i in range(6, len(TOKENS))]
    assert _max_err(torch.cat(steps, 1), full) <= 1e-5 * full.abs().max().item()


def test_cache_bytes_follow_the_policy(tiny):
    cfg, _, model = tiny
    for spec in ("f16", "bf16,first1=f32"):
        cache = model.new_cache(1, 8, kv=spec)
        assert cache.nbytes == 8 * parse_kv_policy(spec, n_layers=2).kv_bytes_per_token(model.config)
        assert parse_kv_policy(cache.spec, n_layers=2) == parse_kv_policy(spec, n_layers=2)


def test_attention_backend_by_name(tiny):
    _, _, model = tiny
    assert "dequant_sdpa" in attention_names()
    with pytest.raises(UserError, match="unknown attention backend"):
        model.logits(torch.tensor([TOKENS]), attn="nosuch")


def test_context_limits(tiny):
    cfg, _, model = tiny
    with pytest.raises(ContextLengthError):
        model.logits(torch.zeros(1, cfg["max_position_embeddings"] + 1, dtype=torch.long))
    with pytest.raises(ContextLengthError):
        model.new_cache(1, cfg["max_position_embeddings"] + 1)
    cache = model.new_cache(1, 4)
    with pytest.raises(ContextLengthError):
        model.forward(torch.tensor([[1, 2, 3]]), cache, 2)


def test_bad_tokens(tiny):
    _, _, model = tiny
    with pytest.raises(UserError):
        model.logits(torch.tensor([[1, 100000]]))
    with pytest.raises(UserError):
        model.logits(torch.tensor([1, 2]))
    with pytest.raises(UserError):
        model.logits(torch.tensor([[1.0, 2.0]]))
