"""Bitshift trellis: structure, reconstruction codes, bit streams and the numpy reference encoders.

A bitshift trellis with `k` bits per value and an `L`-bit state (Tseng et al. 2024, "QTIP")
reads a bit stream k bits at a time; the state after value t is the last L bits read, and the
value is reconstructed as `table[state]`, a table of 2**L numbers (or a code computed from the
state). Consecutive states overlap in L - k bits, so the encoder cannot pick values freely: it
searches for the bit stream whose reconstruction is nearest the input (Viterbi), or picks the
best next value at each step (greedy).

The stream of a group of T values is *tail-biting*: it is read circularly, so the first states
take their older bits from the end of the stream. That costs no side bits (exactly k bits per
value) and leaves no warm-up at the start of a group: value t's state is the circular window of L
bits that ends with value t's own k bits. The last L-k bits of the stream (the *overlap*) are
thus shared by the last state and the first one.

Paths are held as states (int32, shape [groups, T]); the stored bit stream is each state's low
k bits, most significant first, packed MSB-first into bytes (`pack_stream` / `stream_states`).

Reference encoders here are numpy, float32 and vectorized over groups; the numba kernels in
`tcq/numba.py` do the same float32 arithmetic in the same order, so their paths are identical:
  * `viterbi_path`, with a fixed overlap or none (free first and last state), is the exact
    minimum-distortion path;
  * `encode_viterbi` picks the overlap of a tail-biting stream from a first pass over the group
    rotated by half (so the wrap point sits mid-sequence, where the search has converged), then
    runs the exact search for that overlap: two passes, near the tail-biting optimum;
  * `encode_greedy` picks the best of all states for the first value (which fixes the overlap),
    then at each step the best of the 2**k next states whose bits respect the overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantbench.kernels.errors import FormatError

MIN_L, MAX_L = 2, 16
ENCODERS = ("viterbi", "greedy")
_CHUNK = 256  # groups per numpy pass: bounds the back-pointer memory of the reference


@dataclass(frozen=True)
class Trellis:
    k: int  # bits per value
    L: int  # state bits

    def __post_init__(self):
        if not 1 <= self.k <= 4:
            raise FormatError(f"trellis: bits per value k={self.k} is not between 1 and 4")
        if not (max(MIN_L, self.k + 1) <= self.L <= MAX_L):
            raise FormatError(f"trellis: state bits L={self.L} must be between {max(MIN_L, self.k + 1)} "
                              f"and {MAX_L} (and above k={self.k})")

    @property
    def n_states(self) -> int:
        return 1 << self.L

    @property
    def n_prev(self) -> int:
        """Number of overlaps: 2**(L-k); a state's predecessors share its top L-k bits as their low bits."""
        return 1 << (self.L - self.k)

    @property
    def n_branch(self) -> int:
        return 1 << self.k

    def check_length(self, T: int) -> None:
        if self.k * T < self.L:
            raise FormatError(f"trellis k={self.k}, L={self.L}: a tail-biting stream needs at least "
                              f"{self.L} bits, a group of {T} values has {self.k * T}")
        if (self.k * T) % 8:
            raise FormatError(f"trellis k={self.k}: a group of {T} values is {self.k * T} bits, not whole bytes")


# ---- reconstruction codes ------------------------------------------------------------------------
CODES = ("trained", "random", "hash")
CODE_SEED = 0x7C9  # random code and training data: fixed, so a table is the same on every machine

HASH_CONSTANTS = (0x9E3779B1, 0x7F4A7C15, 0x85EBCA6B)  # golden-ratio multiplier, an odd offset, murmur3's mixer
BYTE_SUM_MEAN = 4 * 255 / 2  # sum of four uniform bytes: mean and standard deviation
BYTE_SUM_STD = float(np.sqrt(4 * (256 ** 2 - 1) / 12))


def hash_code(states: np.ndarray) -> np.ndarray:
    """Computed code: a 32-bit integer hash of the state, its four bytes summed (nearly Gaussian by
    the central limit theorem) and standardized. Needs no table: registers only on a GPU."""
    mul1, add, mul2 = (np.uint64(c) for c in HASH_CONSTANTS)
    h = (states.astype(np.uint64) * mul1 + add) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * mul2) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(13)
    total = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + (h >> 24)
    return ((total.astype(np.float32) - np.float32(BYTE_SUM_MEAN)) / np.float32(BYTE_SUM_STD)).astype(np.float32)


def random_code(L: int) -> np.ndarray:
    """Seeded i.i.d. N(0,1) table (the untrained baseline)."""
    return np.random.default_rng(CODE_SEED + L).standard_normal(1 << L).astype(np.float32)


# ---- bit streams ----------------------------------------------------------------------------------
def pack_stream(states: np.ndarray, k: int) -> np.ndarray:
    """[G, T] states -> [G, T*k/8] uint8: each state's low k bits, MSB-first."""
    G, T = states.shape
    shifts = np.arange(k - 1, -1, -1, dtype=np.int32)
    bits = ((states[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(G, T * k)
    return np.packbits(bits, axis=1)


def stream_states(codes: np.ndarray, trellis: Trellis, T: int) -> np.ndarray:
    """[G, T*k/8] uint8 -> [G, T] int32 states: value t's state is the circular window of L bits
    ending with its own k bits."""
    k = trellis.k
    bits = np.unpackbits(codes, axis=1)[:, : k * T].reshape(-1, T, k).astype(np.int32)
    symbols = (bits << np.arange(k - 1, -1, -1)).sum(-1)
    states = np.zeros_like(symbols)
    for back in range(-(-trellis.L // k)):  # value t - back's symbol, circularly
        states |= np.roll(symbols, back, axis=1) << (k * back)
    return (states & (trellis.n_states - 1)).astype(np.int32)


def path_distortion(x: np.ndarray, states: np.ndarray, table: np.ndarray) -> np.ndarray:
    """float64 squared error of each group's path."""
    return ((table[states].astype(np.float64) - x.astype(np.float64)) ** 2).sum(axis=1)


# ---- reference encoders (numpy) -------------------------------------------------------------------
def viterbi_path(x: np.ndarray, table: np.ndarray, trellis: Trellis, overlap: np.ndarray | None = None) -> np.ndarray:
    """Exact minimum-distortion paths for groups x [G, T] (float32).

    overlap None: any first state, any last state. overlap [G] ints: the state before the first
    value and the last state both end in these L-k bits (a tail-biting stream with that overlap).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.int32)
    for lo in range(0, x.shape[0], _CHUNK):
        part = None if overlap is None else overlap[lo: lo + _CHUNK]
        out[lo: lo + _CHUNK] = _viterbi_chunk(x[lo: lo + _CHUNK], table, trellis, part)
    return out


def _viterbi_chunk(x, table, trellis: Trellis, overlap):
    G, T = x.shape
    K, P, L, k = trellis.n_branch, trellis.n_prev, trellis.L, trellis.k
    S = trellis.n_states
    table = np.asarray(table, dtype=np.float32)
    rows = np.arange(G)
    cost = np.zeros((G, S), np.float32)
    if overlap is not None:
        cost[:] = np.inf
        cost[rows, overlap] = 0.0  # the first state is overlap << k | b: only the overlap's bits matter
    back = np.empty((T, G, P), np.uint8)
    up = np.arange(S) >> k  # each state's overlap with its predecessors
    for t in range(T):
        grouped = cost.reshape(G, K, P)  # [j, u]: predecessor u + j * P of the states u << k | b
        back[t] = grouped.argmin(axis=1)
        best = grouped.min(axis=1)
        d = x[:, t, None] - table[None, :]
        cost = best[:, up] + d * d
    if overlap is not None:
        cost = np.where((np.arange(S)[None, :] & (P - 1)) == overlap[:, None], cost, np.float32(np.inf))
    state = cost.argmin(axis=1)
    out = np.empty((G, T), np.int32)
    for t in range(T - 1, -1, -1):
        out[:, t] = state
        u = state >> k
        state = u | (back[t, rows, u].astype(np.int64) << (L - k))
    return out


def rotation_overlap(x: np.ndarray, table: np.ndarray, trellis: Trellis) -> np.ndarray:
    """Overlap for a tail-biting stream: from the free path over each group rotated by half, the
    low L-k bits of the state at the wrap point (after the group's last value)."""
    T = x.shape[1]
    half = T // 2
    rotated = np.concatenate([x[:, half:], x[:, :half]], axis=1)
    return viterbi_path(rotated, table, trellis)[:, T - half - 1] & (trellis.n_prev - 1)


def encode_viterbi(x: np.ndarray, table: np.ndarray, trellis: Trellis) -> np.ndarray:
    """Tail-biting paths for groups x [G, T]: overlap from the rotated pass, then the exact search."""
    trellis.check_length(x.shape[1])
    return viterbi_path(x, table, trellis, rotation_overlap(x, table, trellis))


def forced_bits(trellis: Trellis, T: int, overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step t, (mask, value) of the bits of value t's k-bit symbol that the overlap fixes: the
    last L-k bits of a tail-biting stream are the overlap. Shapes [G, T], int32."""
    k, n = trellis.k, trellis.k * T
    first = n - (trellis.L - k)
    mask = np.zeros((overlap.shape[0], T), np.int32)
    value = np.zeros((overlap.shape[0], T), np.int32)
    for p in range(first, n):
        t, i = divmod(p, k)
        bit = (overlap >> (n - 1 - p)) & 1
        mask[:, t] |= 1 << (k - 1 - i)
        value[:, t] |= bit << (k - 1 - i)
    return mask, value


def encode_greedy(x: np.ndarray, table: np.ndarray, trellis: Trellis) -> np.ndarray:
    """Greedy tail-biting paths: best first state overall, then the best allowed next state."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    G, T = x.shape
    trellis.check_length(T)
    k, K, S = trellis.k, trellis.n_branch, trellis.n_states
    table = np.asarray(table, dtype=np.float32)
    d = x[:, 0, None] - table[None, :]
    state = (d * d).argmin(axis=1).astype(np.int64)
    mask, value = forced_bits(trellis, T, state >> k)
    out = np.empty((G, T), np.int32)
    out[:, 0] = state
    symbols = np.arange(K)
    for t in range(1, T):
        nxt = ((state[:, None] << k) | symbols[None, :]) & (S - 1)
        d = x[:, t, None] - table[nxt]
        err = np.where((symbols[None, :] & mask[:, t, None]) == value[:, t, None], d * d, np.float32(np.inf))
        state = nxt[np.arange(G), err.argmin(axis=1)]
        out[:, t] = state
    return out


def encode(x: np.ndarray, table: np.ndarray, trellis: Trellis, encoder: str) -> np.ndarray:
    if encoder == "viterbi":
        return encode_viterbi(x, table, trellis)
    if encoder == "greedy":
        return encode_greedy(x, table, trellis)
    raise FormatError(f"trellis: unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
