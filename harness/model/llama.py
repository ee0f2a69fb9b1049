"""Llama-family forward (Llama, Mistral, Qwen2, Qwen3) with a static, format-quantized KV cache.

gpt-fast style: RMSNorm, RoPE (rotate-half layout, as in Hugging Face checkpoints), grouped-query
attention, SwiGLU. q/k/v and gate/up are fused into one matmul each. Weights use the names
below; loaders produce them (see `weight_shapes`).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import ModelFileError
from .kv_cache import KVCache


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight the forward needs, with its shape ([out, in] for matrices)."""
    c = config
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    shapes = {"tok_embeddings": (c.vocab_size, c.dim), "norm": (c.dim,)}
    if not c.tie_embeddings:
        shapes["output"] = (c.vocab_size, c.dim)
    for i in range(c.n_layers):
        p = f"layers.{i}."
        shapes.update({p + "attn_norm": (c.dim,), p + "wqkv": (q + 2 * kv, c.dim), p + "wo": (c.dim, q),
                       p + "ffn_norm": (c.dim,), p + "w13": (2 * c.hidden_dim, c.dim),
                       p + "w2": (c.dim, c.hidden_dim)})
        if c.qkv_bias:
            shapes[p + "bqkv"] = (q + 2 * kv,)
        if c.qk_norm:
            shapes[p + "q_norm"] = (c.head_dim,)
            shapes[p + "k_norm"] = (c.head_dim,)
    return shapes


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()  # the mean of squares in float32 also when the model runs in bf16/fp16
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def rope_tables(config: ModelConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [max_seq_len, head_dim] for the rotate-half layout."""
    half = config.head_dim // 2
    inv_freq = 1.0 / config.rope_theta ** (torch.arange(half, dtype=torch.float64) / half)
    angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [batch, n, heads, head_dim]; cos/sin [n, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.config = config
        expected = weight_shapes(config)
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise ModelFileError(f"missing weights: {', '.join(missing[:5])}")
        for name, shape in expected.items():
            if tuple(weights[name].shape) != shape:
                raise ModelFileError(f"weight {name} has shape {tuple(weights[name].shape)}, expected {shape}")
        self.w = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(weights[n], requires_grad=False)
                                   for n in expected})
        cos, sin = rope_tables(config, weights["norm"].device)
        self.register_buffer("rope_cos", cos.to(weights["norm"].dtype), persistent=False)
        self.register_buffer("rope_sin", sin.to(weights["norm"].dtype), persistent=False)
        # weight name -> callable(x, bias) replacing F.linear for that weight (quantized weights, Hessian
        # recording: harness/weights); the embedding lookup's replacement table; weight name -> tensor
        # replacing a norm weight or bias (smoothing scales folded into a norm: harness/activations).
        # Empty: the dense path.
        self.linear_overrides: dict = {}
        self.embedding_override: torch.Tensor | None = None
        self.weight_overrides: dict[str, torch.Tensor] = {}

    def _weight(self, name: str, stored: torch.Tensor) -> torch.Tensor:
        return self.weight_overrides.get(name, stored) if self.weight_overrides else stored

    def _p(self, layer: int, name: str) -> torch.Tensor:
        return self._weight(f"layers.{layer}.{name}", self.w[f"layers_{layer}_{name}"])

    def _linear(self, x: torch.Tensor, layer: int | None, name: str, bias=None) -> torch.Tensor:
        if self.linear_overrides:
            override = self.linear_overrides.get(name if layer is None else f"layers.{layer}.{name}")
            if override is not None:
                return override(x, bias)
        return F.linear(x, self.w[name] if layer is None else self._p(layer, name), bias)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, cache: KVCache, start_pos: int | torch.Tensor,
                sections=None, last_only: bool = False) -> torch.Tensor:
        """Logits [batch, n, vocab] for tokens [batch, n] at positions start_pos..start_pos+n-1.

        `start_pos` as an int reads only the filled cache prefix; as a 0-dim device tensor it
        reads the whole cache under a mask (static shapes for CUDA-graph capture).
        `sections`, if given, has `.section(name)` context managers timing "cache_write" (encoding K and V
        into the cache), "attention" (reading it) and "matmul".
        `last_only` computes logits for the last position only (prefill as llama.cpp benchmarks it).
        """
        c = self.config
        timed = sections.section if sections is not None else _untimed
        batch, n = tokens.shape
        if isinstance(start_pos, torch.Tensor):
            positions = start_pos + torch.arange(n, device=tokens.device)
            length = cache.max_len
            mask = torch.arange(length, device=tokens.device)[None, :] <= positions[:, None]
        else:
            positions = torch.arange(start_pos, start_pos + n, device=tokens.device)
            length = start_pos + n
            mask = None
            if n > 1:
                mask = torch.arange(length, device=tokens.device)[None, :] <= positions[:, None]
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        q_size, kv_size = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        table = self.embedding_override
        x = F.embedding(tokens, self.w["tok_embeddings"] if table is None else table)
        for i, (k_store, v_store) in enumerate(cache.layers):
            h = rms_norm(x, self._p(i, "attn_norm"), c.norm_eps)
            with timed("matmul"):
                qkv = self._linear(h, i, "wqkv", self._p(i, "bqkv") if c.qkv_bias else None)
            q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
            q = q.view(batch, n, c.n_heads, c.head_dim)
            k = k.view(batch, n, c.n_kv_heads, c.head_dim)
            v = v.view(batch, n, c.n_kv_heads, c.head_dim)
            if c.qk_norm:
                q = rms_norm(q, self._p(i, "q_norm"), c.norm_eps)
                k = rms_norm(k, self._p(i, "k_norm"), c.norm_eps)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            with timed("cache_write"):
                k_store.write(k.transpose(0, 1), start_pos)
                v_store.write(v.transpose(0, 1), start_pos)
            with timed("attention"):
                out = cache.attend(q.transpose(1, 2), k_store, v_store, length, mask)
            out = out.transpose(1, 2).reshape(batch, n, q_size)
            with timed("matmul"):
                x = x + self._linear(out, i, "wo")
            h = rms_norm(x, self._p(i, "ffn_norm"), c.norm_eps)
            with timed("matmul"):
                gate, up = self._linear(h, i, "w13").chunk(2, dim=-1)
            act = F.silu(gate) * up
            with timed("matmul"):
                x = x + self._linear(act, i, "w2")
        if last_only:
            x = x[:, -1:]
        x = rms_norm(x, self._weight("norm", self.w["norm"]), c.norm_eps)
        with timed("matmul"):
            logits = self._linear(x, None, "tok_embeddings" if c.tie_embeddings else "output")
        return logits.float()


def _untimed(name: str):
    return contextlib.nullcontext()


def fuse_projections(config: ModelConfig, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-projection weights (layers.i.wq/wk/wv/bq/bk/bv/w1/w3, rotate-half q/k rows) -> fused names."""
    fused = dict(parts)
    for i in range(config.n_layers):
        p = f"layers.{i}."
        try:
            fused[p + "wqkv"] = torch.cat([fused.pop(p + s) for s in ("wq", "wk", "wv")])
            fused[p + "w13"] = torch.cat([fused.pop(p + s) for s in ("w1", "w3")])
            if config.qkv_bias:
                fused[p + "bqkv"] = torch.cat([fused.pop(p + s) for s in ("bq", "bk", "bv")])
        except KeyError as exc:
            raise ModelFileError(f"missing weight {exc.args[0]}") from None
    return fused


def random_weights(config: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float32,
                   device="cpu") -> dict[str, torch.Tensor]:
    """Seeded random weights of the right shapes (speed runs without the model file)."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in weight_shapes(config).items():
        if len(shape) == 1 and not name.endswith("bqkv"):
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            tensor = 0.02 * torch.randn(shape, generator=gen)
        weights[name] = tensor.to(device=device, dtype=dtype)
    return weights
