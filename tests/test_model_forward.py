"""The forward against a float64 reference on tiny hand-built models, loaded from GGUF and from
safetensors folders: proves the Q/K un-permute, GQA, RoPE, qkv bias (Qwen2) and q/k norm (Qwen3)."""
import pytest
import torch
from model_helpers import random_hf_weights, reference_logits, tiny_hf_config, write_gguf, write_hf_dir

from quantbench.harness.model import ModelConfig, load_model

TOKENS = [5, 17, 200, 3, 99, 42, 42, 7, 255, 1, 64, 128]
ARCHS = ["llama", "qwen2", "qwen3"]


def _close(a, b, rtol=1e-5):
    """float32 accuracy: errors relative to the logits' scale."""
    scale = b.abs().max().item()
    assert (a.double() - b.double()).abs().max().item() <= rtol * scale + 1e-6


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tmp_path_factory):
    arch = request.param
    folder = tmp_path_factory.mktemp(arch)
    cfg = tiny_hf_config(arch)
    weights = random_hf_weights(cfg, seed=ARCHS.index(arch))
    write_gguf(folder / "tiny.gguf", cfg, weights, quantize=("ffn_up.weight",))  # Q8_0 values written back
    write_hf_dir(folder / "hf", cfg, weights)
    return cfg, weights, folder


def test_gguf_and_safetensors_match_float64_reference(tiny):
    cfg, weights, folder = tiny
    expected = reference_logits(cfg, weights, TOKENS)[None]
    from_gguf = load_model(folder / "tiny.gguf").logits(torch.tensor([TOKENS]))
    from_hf = load_model(folder / "hf").logits(torch.tensor([TOKENS]))
    assert from_gguf.shape == (1, len(TOKENS), cfg["vocab_size"]) and from_gguf.dtype == torch.float32
    _close(from_gguf, expected)
    _close(from_hf, expected)
    _close(from_gguf, from_hf)


def test_gguf_config_reads_shapes(tiny):
    cfg, _, folder = tiny
    config = load_model(folder / "tiny.gguf").config
    assert (config.n_layers, config.n_heads, config.n_kv_heads, config.head_dim, config.dim) == (2, 4, 2, 32, 64)
    assert config.arch == ("llama" if cfg["model_type"] == "llama" else cfg["model_type"])
    assert config.qkv_bias == (cfg["model_type"] == "qwen2")
    assert config.qk_norm == (cfg["model_type"] == "qwen3")


def test_llama_gguf_rows_are_permuted_and_restored(tmp_path):
    """The llama file holds llama.cpp's permuted rows (a NEOX-layout qwen3 file of the same tensors
    holds them unpermuted); both load to the reference's logits."""
    cfg = tiny_hf_config("llama")
    weights = random_hf_weights(cfg, seed=7)
    write_gguf(tmp_path / "llama.gguf", cfg, weights)
    write_gguf(tmp_path / "neox.gguf", cfg, weights, arch="qwen3")
    from gguf import GGUFReader
    stored = {p: {t.name: t.data for t in GGUFReader(tmp_path / p).tensors} for p in ("llama.gguf", "neox.gguf")}
    assert not (stored["llama.gguf"]["blk.0.attn_k.weight"] == stored["neox.gguf"]["blk.0.attn_k.weight"]).all()
    expected = reference_logits(cfg, weights, TOKENS)[None]
    for name in ("llama.gguf", "neox.gguf"):
        _close(load_model(tmp_path / name).logits(torch.tensor([TOKENS])), expected)


def test_decode_steps_match_prefill(tiny):
    _, _, folder = tiny
    model = load_model(folder / "hf")
    tokens = torch.tensor([TOKENS])
    full = model.logits(tokens)
    cache = model.new_cache(1, 16)
    steps = [model.forward(tokens[:, :5], cache, 0)]
    steps += [model.forward(tokens[:, i:i + 1], cache, i) for i in range(5, 9)]
    steps += [model.forward(tokens[:, i:i + 1], cache, torch.tensor(i)) for i in range(9, len(TOKENS))]
    _close(torch.cat(steps, dim=1), full)


def test_batch_rows_are_independent(tiny):
    _, _, folder = tiny
    model = load_model(folder / "hf")
    a, b = torch.tensor([TOKENS]), torch.tensor([TOKENS[::-1]])
    both = model.logits(torch.cat([a, b]))
    _close(both[:1], model.logits(a))
    _close(both[1:], model.logits(b))


def test_transformers_agrees_on_tiny_folders(tiny):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg, weights, folder = tiny
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(folder / "hf"), dtype=torch.float32)
    with torch.no_grad():
        expected = hf(torch.tensor([TOKENS])).logits
    _close(load_model(folder / "hf").logits(torch.tensor([TOKENS])), expected)


def test_random_weights_from_config():
    config = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=1, head_dim=16, dim=48, hidden_dim=64, vocab_size=100,
                         max_seq_len=32)
    model = load_model(config=config.to_dict(), seed=3)
    again = load_model(config=config, seed=3)
    other = load_model(config=config, seed=4)
    tokens = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model.logits(tokens), again.logits(tokens))
    assert not torch.equal(model.logits(tokens), other.logits(tokens))
    assert model.identity == again.identity != other.identity
    assert torch.isfinite(model.logits(tokens)).all()


def test_random_weights_keep_file_config(tiny):
    _, _, folder = tiny
    real = load_model(folder / "tiny.gguf")
    fake = load_model(folder / "tiny.gguf", random_weights=True)
    assert fake.config == real.config and fake.identity != real.identity
    assert fake.tokenize("the") == real.tokenize("the")
