"""Read a Hugging Face model folder (config.json + *.safetensors) of Llama, Mistral, Qwen2 or Qwen3."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ARCHITECTURES, ModelConfig
from .errors import ModelFileError, UnsupportedModelError

_LAYER_TENSORS = {  # HF name (after model.layers.N.) -> forward name (before fusing)
    "input_layernorm.weight": "attn_norm", "self_attn.q_proj.weight": "wq", "self_attn.k_proj.weight": "wk",
    "self_attn.v_proj.weight": "wv", "self_attn.o_proj.weight": "wo", "self_attn.q_proj.bias": "bq",
    "self_attn.k_proj.bias": "bk", "self_attn.v_proj.bias": "bv", "self_attn.q_norm.weight": "q_norm",
    "self_attn.k_norm.weight": "k_norm", "post_attention_layernorm.weight": "ffn_norm",
    "mlp.gate_proj.weight": "w1", "mlp.up_proj.weight": "w3", "mlp.down_proj.weight": "w2",
}


REQUIRED_INTS = ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size", "vocab_size")
OPTIONAL_INTS = ("num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window")


def read_hf_config(folder: Path) -> tuple[ModelConfig, dict]:
    path = folder / "config.json"
    if not path.exists():
        raise ModelFileError(f"{folder}: no config.json (a Hugging Face model folder needs one)")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: not JSON ({exc.msg})") from None
    arch = hf.get("model_type")
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(f"{path}: model_type {arch!r} is not supported "
                                    f"(supported: {', '.join(ARCHITECTURES)})")
    scaling = hf.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise UnsupportedModelError(f"{path}: RoPE scaling {scaling} is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{path}: activation {hf['hidden_act']!r} is not supported (silu only)")
    if not isinstance(hf, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    for key in REQUIRED_INTS:
        if key not in hf:
            raise ModelFileError(f"{path}: missing {key}")
    for key in (*REQUIRED_INTS, *OPTIONAL_INTS):
        value = hf.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ModelFileError(f"{path}: {key} must be a positive integer, got {value!r}")
    n_heads = hf["num_attention_heads"]
    max_len = hf.get("max_position_embeddings", 2048)
    if hf.get("sliding_window") and hf.get("use_sliding_window", arch == "mistral"):
        max_len = min(max_len, hf["sliding_window"])  # full attention is exact up to the window
    try:
        config = ModelConfig(
            n_layers=hf["num_hidden_layers"], n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads, dim=hf["hidden_size"],
            hidden_dim=hf["intermediate_size"], vocab_size=hf["vocab_size"], max_seq_len=max_len,
            rope_theta=float(hf.get("rope_theta", 10000.0)), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            arch=arch, name=hf.get("_name_or_path") or folder.name, qkv_bias=arch == "qwen2",
            qk_norm=arch == "qwen3", tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
    except KeyError as exc:
        raise ModelFileError(f"{path}: missing {exc.args[0]}") from None
    return config, hf


def safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFileError(f"{folder}: no *.safetensors files")
    return files


def read_weights(folder: Path, config: ModelConfig, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    raw = {}
    for path in safetensors_files(folder):
        try:
            raw.update(load_file(str(path)))
        except (SafetensorError, OSError) as exc:
            raise ModelFileError(f"{path}: not a readable safetensors file ({exc})") from None
    names = {"model.embed_tokens.weight": "tok_embeddings", "model.norm.weight": "norm"}
    if not config.tie_embeddings:
        names["lm_head.weight"] = "output"
    for i in range(config.n_layers):
        names.update({f"model.layers.{i}.{h}": f"layers.{i}.{n}" for h, n in _LAYER_TENSORS.items()})
    weights = {}
    for hf_name, name in names.items():
        if hf_name in raw:
            weights[name] = raw[hf_name].to(dtype)
        elif name.rsplit(".", 1)[-1] not in ("bq", "bk", "bv", "q_norm", "k_norm"):
            raise ModelFileError(f"{folder}: no tensor {hf_name}")
    return weights
