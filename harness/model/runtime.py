"""Model: a loaded Llama-family model with its tokenizer, the API the harness uses."""
from __future__ import annotations

import torch

from .config import ModelConfig
from .errors import ContextLengthError, ModelError, UnsupportedModelError
from .kv_cache import KVCache
from .kv_policy import KVPolicy, parse_kv_policy
from .llama import Transformer


class Model:
    """Llama-family forward plus tokenizer.

    config      ModelConfig
    identity    short stable id of the weights (keys on-disk caches)
    logits(tokens, kv=None, attn="dequant_sdpa")      whole-sequence logits through a fresh cache
    new_cache(batch, max_len, kv=None, attn=...)      a static KV cache
    forward(tokens, cache, start_pos)                 prefill (many tokens) or decode step (one)
    """

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor], identity: str,
                 tokenizer=None, source: str = ""):
        self.config = config
        self.identity = identity
        self.tokenizer = tokenizer
        self.source = source
        self.transformer = Transformer(config, weights).eval()
        self.kv_stats = None  # KVCalibration, made by kv_calibration() on first use

    def __repr__(self) -> str:
        c = self.config
        return (f"<Model {c.name or c.arch}: {c.n_layers} layers, {c.n_heads}/{c.n_kv_heads} heads x "
                f"{c.head_dim}, vocab {c.vocab_size}, {self.device} {self.dtype}>")

    @property
    def device(self) -> torch.device:
        return self.transformer.w["norm"].device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.w["norm"].dtype

    def policy(self, kv: KVPolicy | str | None) -> KVPolicy | None:
        if isinstance(kv, str):
            return parse_kv_policy(kv, n_layers=self.config.n_layers)
        return kv

    def new_cache(self, batch: int, max_len: int, kv: KVPolicy | str | None = None,
                  attn: str = "dequant_sdpa") -> KVCache:
        if batch <= 0 or max_len <= 0:
            raise ModelError(f"cache needs a positive batch and length, got batch={batch} max_len={max_len}")
        return KVCache(self.config, batch, max_len, self.policy(kv), attn, self.device, self.dtype,
                       calibration=self.kv_calibration)

    def kv_calibration(self):
        """Statistics of the model's own K and V (harness/model/kv_calibration.py), computed on first
        use and kept in `kv_stats` (which may also be set to a KVCalibration of one's own)."""
        if self.kv_stats is None:
            from .kv_calibration import calibrate

            self.kv_stats = calibrate(self)
        return self.kv_stats

    def forward(self, tokens: torch.Tensor, cache: KVCache, start_pos: int | torch.Tensor = 0,
                sections=None, last_only: bool = False) -> torch.Tensor:
        """Logits [batch, n (or 1 if last_only), vocab] for tokens [batch, n] at start_pos.., filling the cache.

        `sections` (an object with `.section(name)` context managers) times "cache_write", "attention" and "matmul".
        """
        tokens = self._check_tokens(tokens)
        if tokens.shape[0] != cache.batch:
            raise ModelError(f"tokens have batch {tokens.shape[0]}, the cache {cache.batch}")
        if not isinstance(start_pos, torch.Tensor):
            cache.check_room(int(start_pos), tokens.shape[1])
        return self.transformer(tokens, cache, start_pos, sections, last_only)

    def logits(self, tokens: torch.Tensor, kv: KVPolicy | str | None = None,
               attn: str = "dequant_sdpa") -> torch.Tensor:
        """Float32 logits [batch, seq, vocab]; K/V pass through the policy's formats (None: float)."""
        tokens = self._check_tokens(tokens)
        cache = self.new_cache(tokens.shape[0], tokens.shape[1], kv, attn)
        return self.forward(tokens, cache, 0)

    def tokenize(self, text: str, add_bos: bool | None = None) -> list[int]:
        return self._tokenizer().encode(text, add_bos)

    def detokenize(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tokenizer().decode(ids)

    def _tokenizer(self):
        if self.tokenizer is None:
            raise UnsupportedModelError(f"{self.source or 'this model'} has no tokenizer")
        return self.tokenizer

    def _check_tokens(self, tokens) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ModelError("tokens must be a LongTensor [batch, seq]")
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ModelError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.config.max_seq_len:
            raise ContextLengthError(f"{tokens.shape[1]} tokens are longer than the model's context "
                                     f"({self.config.max_seq_len})")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ModelError(f"token ids must lie in 0..{self.config.vocab_size - 1}, got {lo}..{hi}")
        return tokens.to(self.device)
