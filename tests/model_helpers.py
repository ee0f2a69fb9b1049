"""Tiny hand-built Llama-family models for the model tests, written as GGUF files and HF folders,
and a float64 reference forward (no cache, explicit per-head loops) to check the forward against."""
from __future__ import annotations

import json
import math

import numpy as np
import torch

SPECIAL = "<|end|>"


def tiny_hf_config(model_type: str = "llama", **overrides) -> dict:
    cfg = {"model_type": model_type, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 32, "hidden_size": 64, "intermediate_size": 96, "vocab_size": len(tiny_vocab()[0]),
           "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
           "tie_word_embeddings": model_type != "qwen3", "hidden_act": "silu"}
    cfg.update(overrides)
    return cfg


def tiny_vocab() -> tuple[list[str], list[str], list[int]]:
    """Byte-level BPE vocab: the 256 byte symbols, a few merges, one control token."""
    from tokenizers import pre_tokenizers

    tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = ["h e", "Ġ t", "Ġt he", "l l", "o Ġ"]
    tokens += [m.replace(" ", "") for m in merges] + [SPECIAL]
    types = [1] * (len(tokens) - 1) + [3]
    return tokens, merges, types


def random_hf_weights(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    dim, hd = cfg["hidden_size"], cfg["head_dim"]
    q, kv, hidden = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd, cfg["intermediate_size"]

    def rand(*shape, scale=None):
        return torch.randn(*shape, generator=gen) * (scale or 1 / math.sqrt(shape[-1]))

    w = {"model.embed_tokens.weight": rand(cfg["vocab_size"], dim, scale=1.0),
         "model.norm.weight": 1 + 0.1 * rand(dim, scale=1.0)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rand(cfg["vocab_size"], dim)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": 1 + 0.1 * rand(dim, scale=1.0),
                  p + "post_attention_layernorm.weight": 1 + 0.1 * rand(dim, scale=1.0),
                  p + "self_attn.q_proj.weight": rand(q, dim), p + "self_attn.k_proj.weight": rand(kv, dim),
                  p + "self_attn.v_proj.weight": rand(kv, dim), p + "self_attn.o_proj.weight": rand(dim, q),
                  p + "mlp.gate_proj.weight": rand(hidden, dim), p + "mlp.up_proj.weight": rand(hidden, dim),
                  p + "mlp.down_proj.weight": rand(dim, hidden)})
        if cfg["model_type"] == "qwen2":
            for name, n in (("q", q), ("k", kv), ("v", kv)):
                w[p + f"self_attn.{name}_proj.bias"] = 0.5 * rand(n, scale=1.0)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = 1 + 0.1 * rand(hd, scale=1.0)
            w[p + "self_attn.k_norm.weight"] = 1 + 0.1 * rand(hd, scale=1.0)
    return w


def write_hf_dir(folder, cfg: dict, weights: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The row order llama.cpp's converter gives llama Q/K: per head, (2, half) -> (half, 2)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, cfg: dict, weights: dict[str, torch.Tensor], quantize: tuple[str, ...] = (),
               arch: str | None = None) -> None:
    """GGUF as llama.cpp's converter writes it; weights whose GGUF name ends in one of `quantize`
    are stored as Q8_0 (write the dequantized values back into `weights` to compare exactly)."""
    import gguf

    arch = arch or ("llama" if cfg["model_type"] in ("llama", "mistral") else cfg["model_type"])
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_key_length(cfg["head_dim"])
    writer.add_value_length(cfg["head_dim"])
    writer.add_rope_dimension_count(cfg["head_dim"])
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    tokens, merges, types = tiny_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    writer.add_bos_token_id(len(tokens) - 1)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                 "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                 "self_attn.v_proj.bias": "attn_v.bias", "self_attn.q_norm.weight": "attn_q_norm.weight",
                 "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
                 "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for hf_name, tensor in weights.items():
        if hf_name.startswith("model.layers."):
            layer, rest = hf_name[len("model.layers."):].split(".", 1)
            name = f"blk.{layer}.{per_layer[rest]}"
        else:
            name = names[hf_name]
        data = tensor.numpy().astype(np.float32)
        if name.endswith(("attn_q.weight", "attn_q.bias")) and arch == "llama":
            data = llama_cpp_permute(data, cfg["num_attention_heads"])
        if name.endswith(("attn_k.weight", "attn_k.bias")) and arch == "llama":
            data = llama_cpp_permute(data, cfg["num_key_value_heads"])
        if name.endswith(quantize):
            packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            weights[hf_name] = torch.from_numpy(gguf.quants.dequantize(packed, gguf.GGMLQuantizationType.Q8_0))
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference_logits(cfg: dict, weights: dict[str, torch.Tensor], tokens: list[int],
                     roundtrip_k=None, roundtrip_v=None) -> torch.Tensor:
    """Float64 forward of one sequence, no cache. roundtrip_k/v(x) stand in for a quantized cache:
    applied to K after RoPE and to V, rows of head_dim."""
    w = {k: v.double() for k, v in weights.items()}
    n_heads, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, n = cfg["rms_norm_eps"], len(tokens)

    def norm(x, weight):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight

    inv_freq = cfg["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    angle = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([angle.cos()] * 2, -1)[:, None], torch.cat([angle.sin()] * 2, -1)[:, None]

    def rope(x):  # x [n, heads, hd], rotate-half pairs (i, i + hd/2)
        rotated = torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + rotated * sin

    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        proj = {}
        for s, heads in (("q", n_heads), ("k", n_kv), ("v", n_kv)):
            y = h @ w[p + f"self_attn.{s}_proj.weight"].T
            if p + f"self_attn.{s}_proj.bias" in w:
                y = y + w[p + f"self_attn.{s}_proj.bias"]
            y = y.reshape(n, heads, hd)
            if s in ("q", "k") and p + f"self_attn.{s}_norm.weight" in w:
                y = norm(y, w[p + f"self_attn.{s}_norm.weight"])
            proj[s] = rope(y) if s in ("q", "k") else y
        k, v = proj["k"], proj["v"]
        if roundtrip_k is not None:
            k = roundtrip_k(k.float()).double()
        if roundtrip_v is not None:
            v = roundtrip_v(v.float()).double()
        out = torch.zeros(n, n_heads, hd, dtype=torch.float64)
        for head in range(n_heads):
            kv_head = head // (n_heads // n_kv)
            scores = torch.einsum("qd,kd->qk", proj["q"][:, head], k[:, kv_head]) / math.sqrt(hd)
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            out[:, head] = torch.softmax(scores, -1) @ v[:, kv_head]
        x = x + out.reshape(n, n_heads * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = norm(x, w["model.norm.weight"])
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return x @ head.T
