"""The embedded SmolLM2-135M-Instruct: loads, tokenizes, and (where transformers is installed)
agrees with transformers' own GGUF loading to float32 accuracy. Short prefixes only."""
import time

import pytest
import torch

from quantbench.harness.model import default_model_path, load_model

TEXT = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # 12345 héllo <|im_start|>user"
# TEXT as transformers' tokenizer (built from the same GGUF file) encodes it
TEXT_IDS = [1604, 3987, 24, 94, 727, 472, 1003, 304, 585, 304, 2067, 216, 34, 1745, 3987, 24, 94, 731, 216, 33, 25,
            1232, 3987, 24, 94, 731, 216, 34, 25, 216, 907, 216, 33, 34, 35, 36, 37, 294, 2756, 31394, 216, 1, 4093]


@pytest.fixture(scope="module")
def model():
    start = time.perf_counter()
    loaded = load_model()
    loaded.load_seconds = time.perf_counter() - start
    return loaded


def test_embedded_config(model):
    c = model.config
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.dim, c.vocab_size) == (30, 9, 3, 64, 576, 49152)
    assert c.arch == "llama" and c.tie_embeddings and c.max_seq_len == 8192 and c.hidden_dim == 1536
    assert c.rope_theta == 100000.0 and abs(c.norm_eps - 1e-5) < 1e-9
    assert model.load_seconds < 60


def test_embedded_tokenizer(model):
    ids = model.tokenize(TEXT)
    assert ids == TEXT_IDS
    assert model.detokenize(ids) == TEXT
    assert ids[-2] == 1  # <|im_start|> is one special token
    assert len(model.tokenize("12345")) == 5  # digits split one by one (SmolLM2's pre-tokenizer)


def test_embedded_predicts_its_text(model):
    ids = model.tokenize("The capital of France is Paris. The capital of Germany is Berlin.")
    logits = model.logits(torch.tensor([ids]))
    assert logits.shape == (1, len(ids), 49152) and torch.isfinite(logits).all()
    guessed = (logits[0, :-1].argmax(-1) == torch.tensor(ids[1:])).float().mean().item()
    assert guessed > 0.4  # random weights would guess ~0


def test_embedded_matches_transformers(model):
    """transformers dequantizes and un-permutes the GGUF tensors itself (shapes from our config,
    which test_embedded_config checks against the file's metadata)."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("accelerate", reason="transformers needs accelerate to load GGUF files")
    c = model.config
    config = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len, rope_theta=c.rope_theta, rms_norm_eps=c.norm_eps,
        tie_word_embeddings=True)
    path = default_model_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, config=config,
                                                           dtype=torch.float32)
    tokens = torch.tensor([TEXT_IDS[:32]])
    with torch.no_grad():
        expected = hf(tokens).logits
    got = model.logits(tokens)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
