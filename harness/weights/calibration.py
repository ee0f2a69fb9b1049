"""Calibration activations of the model itself: the input Hessian H = 2 X^T X / n of each weight.

Sequences come from the END of the corpus (the default: CPython's pydoc topics, harness/quality/
corpus.py), n_seq sequences of seq_len tokens, each starting with the tokenizer's BOS like the
quality chunks; the quality run scores chunks from the start of the same corpus, so the two do not
overlap while n_seq*seq_len + chunks*ctx stays below the corpus length (calibration_tokens checks).
All Hessians come from one pass of the unquantized model (not layer-by-layer through the already
quantized layers as in the GPTQ paper): simpler, and every tensor is quantized independently.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..quality.corpus import Corpus, bos_token, default_corpus

DEFAULT_SEQUENCES = 16
DEFAULT_LENGTH = 256


@dataclass
class Calibration:
    tokens: torch.Tensor  # int64 [n_seq, seq_len]
    source: str

    @property
    def label(self) -> str:
        return f"{self.source}:{self.tokens.shape[0]}x{self.tokens.shape[1]}"


def calibration_tokens(model, corpus: Corpus | None = None, n_seq: int = DEFAULT_SEQUENCES,
                       seq_len: int = DEFAULT_LENGTH, reserved_tokens: int = 0) -> Calibration:
    """The corpus's last n_seq*seq_len tokens as [n_seq, seq_len]; `reserved_tokens` at the start
    (the evaluation chunks) must stay clear of them."""
    if n_seq < 1 or seq_len < 2:
        raise UserError(f"calibration needs at least 1 sequence of 2 tokens, got {n_seq} x {seq_len}")
    if seq_len > model.config.max_seq_len:
        raise UserError(f"calibration length {seq_len} is longer than the model's context ({model.config.max_seq_len})")
    corpus = corpus or default_corpus()
    ids = model.tokenize(corpus.text)
    need = n_seq * seq_len
    if need + reserved_tokens > len(ids):
        raise UserError(f"corpus {corpus.name} has {len(ids)} tokens: too few for {n_seq} x {seq_len} calibration "
                        f"tokens after the {reserved_tokens} evaluation tokens")
    tokens = torch.tensor(ids[len(ids) - need:], dtype=torch.long).view(n_seq, seq_len).clone()
    bos = bos_token(model)
    if bos is not None:
        tokens[:, 0] = bos
    return Calibration(tokens, corpus.name)


class _HessianRecorder:
    def __init__(self, weight: torch.Tensor):
        self.weight = weight
        self.sum = torch.zeros(weight.shape[1], weight.shape[1], dtype=torch.float64)
        self.count = 0

    def __call__(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        self.sum += (flat.T @ flat).double().cpu()  # float32 per sequence, float64 across sequences
        self.count += flat.shape[0]
        return F.linear(x, self.weight, bias)

    def hessian(self) -> torch.Tensor:
        return 2 * self.sum / max(self.count, 1)


def collect_hessians(model, tokens: torch.Tensor, names: list[str], progress: bool = True) -> dict[str, torch.Tensor]:
    """H = 2 X^T X / n (float64) of the inputs of the named matmul weights ("layers.3.wqkv",
    "tok_embeddings" for a tied output projection, "output"), over every token of every sequence."""
    t = model.transformer
    if t.linear_overrides:
        raise UserError("collect_hessians: the model has weight overrides installed; calibrate the unquantized model")
    recorders = {name: _HessianRecorder(t.w[name.replace(".", "_")]) for name in names}
    t.linear_overrides = dict(recorders)
    try:
        for i in range(tokens.shape[0]):
            if progress:
                print(f"calibration: sequence {i + 1}/{tokens.shape[0]}", file=sys.stderr, flush=True)
            model.logits(tokens[i:i + 1])
    finally:
        t.linear_overrides = {}
    return {name: r.hessian() for name, r in recorders.items()}
