"""Evaluation text and its chunks, cut the way llama-perplexity cuts them.

The text is tokenized once as the model's tokenizer does by default. Chunk i is tokens
[i*ctx, (i+1)*ctx); its first token is replaced by BOS when the tokenizer puts a BOS before text
(llama.cpp's `add_bos`). Only the second half of a chunk is scored: the logits at positions
ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1, so every scored token has at least ctx/2 tokens
of context and a chunk scores ctx - ctx/2 - 1 tokens.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quantbench.harness.errors import UserError

DEFAULT_NAME = "pydoc_topics"
MIN_CTX = 8


class CorpusError(UserError):
    """A corpus that is missing, unreadable, empty or too short for the asked chunks."""


@dataclass(frozen=True)
class Corpus:
    name: str
    text: str = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def default_corpus() -> Corpus:
    """CPython's documentation topics (`pydoc_data.topics`), joined in sorted-key order."""
    from pydoc_data.topics import topics

    return Corpus(DEFAULT_NAME, "\n".join(topics[key] for key in sorted(topics)))


def load_corpus(path: str | Path | None = None) -> Corpus:
    """A UTF-8 text file as a corpus; None gives the default corpus."""
    if path is None:
        return default_corpus()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"corpus file not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"corpus {path} is a folder, not a text file") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(f"corpus {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise CorpusError(f"corpus {path} is empty")
    return Corpus(path.name, text)


@dataclass(frozen=True)
class Chunks:
    tokens: torch.Tensor  # int64 [count, ctx], BOS substituted
    available: int  # whole chunks the corpus holds
    bos: int | None  # the token put first in every chunk, if any
    start: int = 0  # corpus index of tokens[0]: chunk i here is chunk start + i of the corpus

    @property
    def count(self) -> int:
        return self.tokens.shape[0]

    @property
    def ctx(self) -> int:
        return self.tokens.shape[1]

    @property
    def first(self) -> int:
        """Position of the first scored logit."""
        return self.ctx // 2

    @property
    def n_scored(self) -> int:
        return self.ctx - self.first - 1

    def targets(self, i: int) -> torch.Tensor:
        """The tokens chunk i's scored logits predict, [n_scored]."""
        return self.tokens[i, self.first + 1:]


def make_chunks(token_ids: list[int], ctx: int, n_chunks: int, bos: int | None = None,
                corpus_name: str = "corpus", start: int = 0) -> Chunks:
    """min(n_chunks, available - start) chunks of ctx tokens, from chunk `start` on (0: the first)."""
    if ctx < MIN_CTX:
        raise CorpusError(f"context {ctx} is too short: need at least {MIN_CTX} tokens per chunk")
    if n_chunks < 1:
        raise CorpusError(f"need at least one chunk, got {n_chunks}")
    if not token_ids:
        raise CorpusError(f"corpus {corpus_name} has no tokens")
    available = len(token_ids) // ctx
    if available == 0:
        raise CorpusError(f"corpus {corpus_name} has {len(token_ids)} tokens, fewer than one chunk of {ctx}")
    if not 0 <= start < available:
        raise CorpusError(f"corpus {corpus_name} holds {available} chunks of {ctx} tokens; "
                          f"cannot start at chunk {start}")
    count = min(n_chunks, available - start)
    tokens = torch.tensor(token_ids[start * ctx:(start + count) * ctx], dtype=torch.long).view(count, ctx).clone()
    if bos is not None:
        tokens[:, 0] = bos
    return Chunks(tokens, available, bos, start)


def bos_token(model) -> int | None:
    """The BOS the model's tokenizer puts before text by default, if any."""
    prefix = model.tokenize("")
    return prefix[0] if prefix else None


def chunk_corpus(model, corpus: Corpus, ctx: int, n_chunks: int, start: int = 0) -> Chunks:
    return make_chunks(model.tokenize(corpus.text), ctx, n_chunks, bos_token(model), corpus.name, start)
