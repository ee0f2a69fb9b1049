"""On-disk cache of the reference model's next-token log-probabilities, one file per chunk.

Where: $QUANTBENCH_CACHE, else <results dir>/cache; then reference/<key>/chunk_<i>.qbref, where
<key> hashes everything the log-probs depend on (model identity, device type and dtype of the
forward, corpus sha256, ctx, first scored position, BOS, this file format). A chunk is the same
file whatever --chunks asks, so a longer run reuses the chunks a shorter one wrote.

A file is b"QBREFLP1", a little-endian uint32 header length, a JSON header (the key, the chunk
index, shapes, the step, the payload's sha256) and the payload, little-endian:
    tokens   int32   [ctx]        the chunk as evaluated (checked against the chunk asked for)
    target   float32 [n]          exact log p_ref(correct next token)
    top      int32   [n]          exact argmax of p_ref
    codes    uint16  [n, vocab]   c = round((max_j lp_j - lp) / STEP), clamped to 65535
Files are written to a temporary name and renamed (os.replace); one that fails any check (magic,
header, length, digest, key, tokens) is reported on stderr and recomputed.

Precision. Decoding gives lp~ = -c * STEP, renormalized (lp~ - logsumexp(lp~)), so the reference
is a proper distribution P~ whose log-probs differ from P's by e_i - mean, |e_i| <= STEP/2 =
2.44e-4 nats (STEP = 32/65535); tokens more than 32 nats below the top one are read as exactly 32
below, which moves at most vocab * e^-32 (6e-10 for 49152 tokens) of probability. Then
    KL(P~||Q) - KL(P||Q) = KL(P~||P) + sum_i (p~_i - p_i) log(p_i / q_i):
the first term is a bias of at most STEP^2/8 = 7.4e-9 nats per token (about STEP^2/24 = 2.5e-9 for
uniform rounding); the second is zero-mean rounding noise bounded by STEP * E_P|log P/Q| per
token, which averages out over tokens. Same-top, PPL(ref) and delta-p use the exact target
log-prob and top token, so they are unaffected.
Cost: 2 * vocab + 8 bytes per scored token plus 4 * ctx per chunk: 98,312 bytes per scored token
for a 49152 vocabulary (98,320 counting the tokens at ctx 512; 25.07 MB per chunk of 255 scored
tokens, 200.6 MB for 8 chunks). The codes are near-incompressible (zlib saves about 3%).
"""
from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from quantbench.kernels.storage import cache_dir, write_atomic

FORMAT_VERSION = 1
MAGIC = b"QBREFLP1"
RANGE_NATS = 32.0
MAX_CODE = 65535
STEP = RANGE_NATS / MAX_CODE


def cache_root() -> Path:
    return cache_dir()


@dataclass(frozen=True)
class RefChunk:
    """One chunk's reference: rounded log-prob codes and the exact target log-prob and top token."""
    codes: np.ndarray  # uint16 [n, vocab]
    target_logp: np.ndarray  # float32 [n]
    top: np.ndarray  # int32 [n]

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.target_logp.nbytes + self.top.nbytes

    def log_probs(self, device="cpu") -> torch.Tensor:
        """The decoded, renormalized reference log-probabilities, float64 [n, vocab]."""
        codes = torch.from_numpy(self.codes.astype(np.int32)).to(device)
        return torch.log_softmax(codes.double() * -STEP, dim=-1)

    def target_tensor(self, device="cpu") -> torch.Tensor:
        return torch.from_numpy(self.target_logp.astype(np.float64)).to(device)

    def top_tensor(self, device="cpu") -> torch.Tensor:
        return torch.from_numpy(self.top.astype(np.int64)).to(device)


def encode_reference(logp: torch.Tensor, targets: torch.Tensor) -> RefChunk:
    """Reference log-probabilities [n, vocab] and the correct next tokens [n] in the cached form."""
    logp = logp.detach().double()
    top_lp, top = logp.max(dim=-1, keepdim=True)
    codes = torch.round((top_lp - logp) / STEP).clamp_(0, MAX_CODE).to(torch.int32)
    target = logp.gather(-1, targets.to(logp.device, torch.long)[:, None])[:, 0]
    return RefChunk(codes.cpu().numpy().astype("<u2"), target.cpu().numpy().astype("<f4"),
                    top[:, 0].cpu().numpy().astype("<i4"))


class ReferenceCache:
    """The cached reference chunks of one (model, corpus, chunking) key."""

    def __init__(self, key: dict, root: str | Path | None = None):
        self.key = {**key, "format_version": FORMAT_VERSION, "step": STEP}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(root if root is not None else cache_root()) / "reference" / digest

    @classmethod
    def for_run(cls, model, corpus_sha256: str, ctx: int, first: int, bos: int | None,
                root: str | Path | None = None) -> "ReferenceCache":
        return cls({"model": model.identity, "device": torch.device(model.device).type,
                    "dtype": str(model.dtype).replace("torch.", ""), "corpus_sha256": corpus_sha256,
                    "ctx": ctx, "first": first, "bos": bos}, root)

    def path(self, index: int) -> Path:
        return self.folder / f"chunk_{index:05d}.qbref"

    def get(self, index: int, tokens: torch.Tensor, targets: torch.Tensor, first: int,
            compute_logits: Callable[[], torch.Tensor]) -> tuple[RefChunk, bool]:
        """(chunk, whether it was computed now): read from disk, or compute, store and return it.

        compute_logits() returns the reference logits [ctx, vocab] of the chunk `tokens` [ctx].
        """
        cached = self.load(index, tokens)
        if cached is not None:
            return cached, False
        logits = compute_logits()
        chunk = encode_reference(torch.log_softmax(logits[first:-1].double(), dim=-1), targets)
        self.save(index, tokens, chunk)
        return chunk, True

    def load(self, index: int, tokens: torch.Tensor) -> RefChunk | None:
        path = self.path(index)
        if not path.exists():
            return None
        try:
            return self._parse(path.read_bytes(), index, tokens)
        except (OSError, ValueError) as exc:
            print(f"quality: reference cache file {path} is unusable ({exc}); recomputing it", file=sys.stderr)
            return None

    def _parse(self, blob: bytes, index: int, tokens: torch.Tensor) -> RefChunk:
        if blob[:len(MAGIC)] != MAGIC:
            raise ValueError("not a reference cache file")
        start = len(MAGIC) + 4
        if len(blob) < start:
            raise ValueError("truncated header")
        (header_len,) = struct.unpack("<I", blob[len(MAGIC):start])
        try:
            header = json.loads(blob[start:start + header_len].decode("utf-8"))
            ctx, n, vocab = int(header["ctx"]), int(header["n"]), int(header["vocab"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable header: {exc}") from None
        if header.get("key") != self.key or header.get("chunk") != index:
            raise ValueError("written for another key or chunk")
        payload = blob[start + header_len:]
        sizes = (4 * ctx, 4 * n, 4 * n, 2 * n * vocab)
        if len(payload) != sum(sizes):
            raise ValueError(f"payload is {len(payload)} bytes, expected {sum(sizes)} (truncated?)")
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise ValueError("payload checksum mismatch")
        offsets = np.cumsum((0,) + sizes)
        saved_tokens = np.frombuffer(payload, "<i4", ctx, offsets[0])
        if not np.array_equal(saved_tokens, tokens.cpu().numpy()):
            raise ValueError("holds other tokens than this chunk")
        return RefChunk(codes=np.frombuffer(payload, "<u2", n * vocab, offsets[3]).reshape(n, vocab),
                        target_logp=np.frombuffer(payload, "<f4", n, offsets[1]),
                        top=np.frombuffer(payload, "<i4", n, offsets[2]))

    def save(self, index: int, tokens: torch.Tensor, chunk: RefChunk) -> Path:
        n, vocab = chunk.codes.shape
        parts = [tokens.cpu().numpy().astype("<i4").tobytes(), chunk.target_logp.astype("<f4").tobytes(),
                 chunk.top.astype("<i4").tobytes(), np.ascontiguousarray(chunk.codes, "<u2").tobytes()]
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        header = json.dumps({"key": self.key, "chunk": index, "ctx": int(tokens.numel()), "n": n,
                             "vocab": vocab, "sha256": digest.hexdigest()}, sort_keys=True).encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "key.json", json.dumps(self.key, indent=1, sort_keys=True).encode())
        path = self.path(index)
        write_atomic(path, MAGIC, struct.pack("<I", len(header)), header, *parts)
        return path


