"""ModelConfig: the shapes and constants of a Llama-family model, independent of where they came from."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFileError

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    dim: int
    hidden_dim: int
    vocab_size: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    arch: str = "llama"
    name: str = ""
    qkv_bias: bool = False  # Qwen2: biases on the q/k/v projections
    qk_norm: bool = False  # Qwen3: RMSNorm over each head of q and k before RoPE
    tie_embeddings: bool = True  # output projection shares the token embedding

    def __post_init__(self):
        for key in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "dim", "hidden_dim", "vocab_size",
                    "max_seq_len"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelFileError(f"model config: {key} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ModelFileError(f"model config: {self.n_heads} query heads are not a multiple of "
                                 f"{self.n_kv_heads} KV heads")
        if self.head_dim % 2:
            raise ModelFileError(f"model config: head_dim {self.head_dim} is odd (RoPE rotates pairs)")

    @property
    def n_params(self) -> int:
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        ffn = 3 * self.dim * self.hidden_dim
        embed = self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return self.n_layers * (attn + ffn + 2 * self.dim) + embed + self.dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"model config: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelFileError(f"model config: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ModelFileError(f"model config not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"model config {path}: not JSON ({exc.msg})") from None
