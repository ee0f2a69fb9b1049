"""Tokenizers: byte-level BPE rebuilt from GGUF metadata, or a Hugging Face tokenizer.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ModelFileError, UnsupportedModelError

# Pre-tokenizer split patterns by GGUF `tokenizer.ggml.pre` (the patterns these tokenizers publish).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
_CONTROL = 3  # GGUF token type of special (control) tokens
_USER_DEFINED = 4


class Tokenizer:
    def __init__(self, backend, bos_id: int | None = None, add_bos: bool = False):
        self.backend = backend
        self.bos_id = bos_id
        self.add_bos = add_bos and bos_id is not None

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if self.add_bos if add_bos is None else add_bos:
            if self.bos_id is None:
                raise UnsupportedModelError("this tokenizer has no BOS token")
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)


def tokenizer_from_gguf(reader) -> Tokenizer | None:
    """The tokenizer a GGUF file describes; None when it has no tokenizer metadata."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    kind = reader.metadata.get("tokenizer.ggml.model")
    if kind is None:
        return None
    if kind != "gpt2":
        raise UnsupportedModelError(f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    pre = _contents(reader, "tokenizer.ggml.pre", "default")
    tokens = _contents(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _contents(reader, "tokenizer.ggml.merges", [])]
    types = _contents(reader, "tokenizer.ggml.token_type", [])
    if tokens is None:
        raise ModelFileError("GGUF tokenizer metadata has no tokenizer.ggml.tokens")
    backend = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                     fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre in ("default", "gpt-2", "gpt2"))
    if pre in ("default", "gpt-2", "gpt2"):
        backend.pre_tokenizer = byte_level
    elif pre == "smollm":
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                         pre_tokenizers.ByteLevel(add_prefix_space=False)])
    elif pre in ("llama-bpe", "llama3", "qwen2"):
        pattern = _QWEN2_SPLIT if pre == "qwen2" else _LLAMA3_SPLIT
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"), byte_level])
    else:
        raise UnsupportedModelError(f"GGUF pre-tokenizer {pre!r} is not supported "
                                    "(default, gpt-2, smollm, llama-bpe, qwen2)")
    backend.decoder = decoders.ByteLevel()
    special_ids = np.flatnonzero(np.isin(np.asarray(types), (_CONTROL, _USER_DEFINED)))
    specials = [AddedToken(tokens[i], special=True, normalized=False) for i in special_ids]
    backend.add_special_tokens(specials)
    bos = reader.metadata.get("tokenizer.ggml.bos_token_id")
    return Tokenizer(backend, int(bos) if bos is not None else None,
                     bool(_contents(reader, "tokenizer.ggml.add_bos_token", False)))


def tokenizer_from_json(folder: Path, bos_id: int | None = None) -> Tokenizer | None:
    from tokenizers import Tokenizer as HFTokenizer

    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    try:
        return Tokenizer(HFTokenizer.from_file(str(path)), bos_id)
    except Exception as exc:  # the tokenizers library raises its own exception type
        raise ModelFileError(f"{path}: not a readable tokenizer ({exc})") from None


def _contents(reader, key: str, default=None):
    return reader.metadata.get(key, default)
