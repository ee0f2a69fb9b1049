"""Read a Llama-family GGUF file: config, weights dequantized to float, tokenizer metadata.

llama.cpp's converter permutes the rows of the llama Q and K projections so that its RoPE can
rotate adjacent pairs; the rows are un-permuted here back to the rotate-half layout the forward
uses. qwen2/qwen3 files are stored unpermuted (llama.cpp runs NEOX RoPE for them).
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import gguf_dequant
from .config import ModelConfig
from .errors import ModelFileError, UnsupportedModelError
from .gguf_file import GgufFile

GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3")
_PERMUTED_QK = ("llama",)
_LAYER_TENSORS = {  # GGUF name -> forward name (before fusing)
    "attn_norm.weight": "attn_norm", "attn_q.weight": "wq", "attn_k.weight": "wk", "attn_v.weight": "wv",
    "attn_output.weight": "wo", "attn_q.bias": "bq", "attn_k.bias": "bk", "attn_v.bias": "bv",
    "attn_q_norm.weight": "q_norm", "attn_k_norm.weight": "k_norm", "ffn_norm.weight": "ffn_norm",
    "ffn_gate.weight": "w1", "ffn_up.weight": "w3", "ffn_down.weight": "w2",
}


def open_gguf(path: Path) -> GgufFile:
    return GgufFile(path)


def field(reader: GgufFile, key: str, default=None):
    value = reader.metadata.get(key)
    if value is None:
        if default is None:
            raise ModelFileError(f"GGUF metadata has no {key}")
        return default
    return value


def read_config(reader: GgufFile, name: str) -> ModelConfig:
    arch = field(reader, "general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported "
                                    f"(supported: {', '.join(GGUF_ARCHITECTURES)})")
    scaling = reader.metadata.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none", ""):
        raise UnsupportedModelError(f"RoPE scaling {scaling!r} is not supported")
    n_heads = int(field(reader, f"{arch}.attention.head_count"))
    dim = int(field(reader, f"{arch}.embedding_length"))
    head_dim = int(field(reader, f"{arch}.attention.key_length", dim // n_heads))
    if int(field(reader, f"{arch}.rope.dimension_count", head_dim)) != head_dim:
        raise UnsupportedModelError("partial RoPE (rope.dimension_count < head_dim) is not supported")
    embed = _tensor_info(reader, "token_embd.weight")
    return ModelConfig(
        n_layers=int(field(reader, f"{arch}.block_count")), n_heads=n_heads,
        n_kv_heads=int(field(reader, f"{arch}.attention.head_count_kv", n_heads)), head_dim=head_dim,
        dim=dim, hidden_dim=int(field(reader, f"{arch}.feed_forward_length")),
        vocab_size=int(embed.shape[-1]), max_seq_len=int(field(reader, f"{arch}.context_length")),
        rope_theta=float(field(reader, f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=float(field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        arch=arch, name=str(field(reader, "general.name", name)),
        qkv_bias=_has(reader, "blk.0.attn_q.bias"), qk_norm=_has(reader, "blk.0.attn_q_norm.weight"),
        tie_embeddings=not _has(reader, "output.weight"))


def read_weights(reader: GgufFile, config: ModelConfig) -> dict[str, torch.Tensor]:
    tensors = reader.tensors
    names = {"token_embd.weight": "tok_embeddings", "output_norm.weight": "norm"}
    if not config.tie_embeddings:
        names["output.weight"] = "output"
    for i in range(config.n_layers):
        names.update({f"blk.{i}.{g}": f"layers.{i}.{n}" for g, n in _LAYER_TENSORS.items()})
    weights = {}
    for gguf_name, name in names.items():
        if gguf_name not in tensors:
            optional = name.rsplit(".", 1)[-1] in ("bq", "bk", "bv", "q_norm", "k_norm")
            if optional:
                continue
            raise ModelFileError(f"GGUF file has no tensor {gguf_name}")
        info = tensors[gguf_name]
        weights[name] = torch.from_numpy(gguf_dequant.dequantize(info, reader.data(info)))
    if config.arch in _PERMUTED_QK:
        for i in range(config.n_layers):
            for key, heads in (("wq", config.n_heads), ("wk", config.n_kv_heads),
                               ("bq", config.n_heads), ("bk", config.n_kv_heads)):
                name = f"layers.{i}.{key}"
                if name in weights:
                    weights[name] = unpermute_rows(weights[name], heads)
    return weights


def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation: within each head, rows (pair, 2) -> (2, pair)."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()


def _tensor_info(reader: GgufFile, name: str):
    if name not in reader.tensors:
        raise ModelFileError(f"GGUF file has no tensor {name}")
    return reader.tensors[name]


def _has(reader: GgufFile, name: str) -> bool:
    return name in reader.tensors
