"""Loader errors, the GGUF-built tokenizer, model identity."""
import json

import pytest
import torch
from model_helpers import SPECIAL, random_hf_weights, tiny_hf_config, write_gguf, write_hf_dir

from quantbench.harness.errors import UserError
from quantbench.harness.model import ModelConfig, ModelFileError, UnsupportedModelError, load_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    cfg = tiny_hf_config("llama")
    weights = random_hf_weights(cfg)
    write_gguf(folder / "tiny.gguf", cfg, weights)
    write_hf_dir(folder / "hf", cfg, weights)
    return folder, cfg, weights


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.gguf")


def test_not_gguf(tmp_path):
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(ModelFileError, match="GGUF"):
        load_model(path)


def test_truncated_gguf(files, tmp_path):
    folder, _, _ = files
    data = (folder / "tiny.gguf").read_bytes()
    for cut in (len(data) // 2, 200):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load_model(path)


def test_unsupported_architectures(files, tmp_path):
    _, cfg, weights = files
    write_gguf(tmp_path / "gpt2.gguf", cfg, dict(weights), arch="gpt2")
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        load_model(tmp_path / "gpt2.gguf")
    write_hf_dir(tmp_path / "phi", {**cfg, "model_type": "phi3"}, weights)
    with pytest.raises(UnsupportedModelError, match="phi3"):
        load_model(tmp_path / "phi")
    write_hf_dir(tmp_path / "scaled", {**cfg, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, weights)
    with pytest.raises(UnsupportedModelError, match="RoPE scaling"):
        load_model(tmp_path / "scaled")


def test_hf_folder_problems(files, tmp_path):
    _, cfg, weights = files
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="config.json"):
        load_model(tmp_path / "empty")
    partial = {k: v for k, v in weights.items() if "layers.1.mlp.down_proj" not in k}
    write_hf_dir(tmp_path / "partial", cfg, partial)
    with pytest.raises(ModelFileError, match="down_proj"):
        load_model(tmp_path / "partial")
    write_hf_dir(tmp_path / "corrupt", cfg, weights)
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "corrupt")


def test_bad_config():
    with pytest.raises(UserError, match="multiple"):
        ModelConfig(n_layers=1, n_heads=3, n_kv_heads=2, head_dim=8, dim=8, hidden_dim=8, vocab_size=8,
                    max_seq_len=8)
    with pytest.raises(UserError, match="unknown key"):
        load_model(config={"n_layers": 1, "bogus": 2})


def test_config_from_json(tmp_path):
    config = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, dim=16, hidden_dim=8, vocab_size=8,
                         max_seq_len=8)
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    assert load_model(config=str(tmp_path / "c.json")).config == config


def test_gguf_tokenizer_round_trip(files):
    folder, _, _ = files
    model = load_model(folder / "tiny.gguf")
    ids = model.tokenize("hello the tell")
    assert model.detokenize(ids) == "hello the tell"
    vocab = model.tokenizer.backend.get_vocab()
    assert vocab["he"] in ids and vocab["Ġthe"] in ids  # merges applied
    special = model.tokenize(f"a{SPECIAL}b")
    assert special[1] == vocab[SPECIAL] and len(special) == 3
    assert model.detokenize(torch.tensor(special)) == f"a{SPECIAL}b"
    assert model.tokenize("a", add_bos=True)[0] == vocab[SPECIAL]  # the file's bos_token_id


def test_model_without_tokenizer(files):
    folder, _, _ = files
    model = load_model(folder / "hf")  # no tokenizer.json in the folder
    with pytest.raises(UnsupportedModelError, match="no tokenizer"):
        model.tokenize("hi")


def test_identity_is_stable_and_content_keyed(files, tmp_path):
    folder, cfg, weights = files
    first = load_model(folder / "tiny.gguf").identity
    assert first == load_model(folder / "tiny.gguf").identity and len(first) == 16
    changed = dict(weights)
    changed["model.norm.weight"] = weights["model.norm.weight"] + 1
    write_gguf(tmp_path / "tiny.gguf", cfg, changed)
    assert load_model(tmp_path / "tiny.gguf").identity != first
