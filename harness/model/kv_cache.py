"""Static KV cache whose keys and values are stored in a cache format from the format registry.

Storage is position-major, [max_len, batch, kv_heads, head_dim] per layer and side (packed fields
keep those leading dimensions), so a prefix of positions is one contiguous slice. Writes go
through the format's encoder and reads through its decoder: attention sees exactly what a
quantized cache would hold, including for the chunk being written (as llama.cpp does).
Where the device has a fast codec for the format (kernels/codecs/cache_codecs.py: numba on the
CPU), writes encode straight into the stored tensors and reads decode with it; it gives the
torch code's bytes and values bit for bit, so only the time changes.
"""
from __future__ import annotations

import torch

from quantbench.kernels.codecs.cache_codecs import fast_codec
from quantbench.kernels.formats import Format, FormatError, Packed
from quantbench.kernels.formats.klt import KLTFormat
from quantbench.kernels.formats.token_groups import ChannelGroups

from .attention import get_attention
from .errors import ContextLengthError
from .klt_store import KLTStore
from .kv_policy import KVPolicy, cache_format
from .kv_techniques import CacheContext
from .token_group_store import TokenGroupStore


def per_row_problem(packed: Packed, lead: tuple[int, ...]) -> str | None:
    """Why a packed value cannot be a cache store (None: it can): every field must keep the
    leading dimensions, so that each position's rows are stored on their own."""
    for name, tensor in packed.fields.items():
        if tuple(tensor.shape[:len(lead)]) != lead:
            return (f"packed field {name!r} has shape {tuple(tensor.shape)} for rows {lead}; the KV cache "
                    "needs per-row fields that keep the leading dimensions (a per-tensor scale cannot be "
                    "stored per position: use the format's per-row scale option)")
    return None


def cache_problem(fmt: Format, head_dim: int) -> str | None:
    """Why `fmt` cannot store a KV cache of this head_dim (None: it can)."""
    try:
        fmt.check_dim(head_dim)
    except FormatError as exc:
        return str(exc)
    return per_row_problem(fmt.encode(torch.zeros(2, 1, 1, head_dim)), (2, 1, 1))


class KVStore:
    """One layer's keys or values. `fmt` None stores them unquantized in `dtype`. `fast` False keeps
    writes and reads on the format's torch code (the reference the fast codecs are tested against)."""

    def __init__(self, fmt: Format | None, max_len: int, batch: int, n_kv_heads: int, head_dim: int,
                 device, dtype: torch.dtype, fast: bool = True):
        self.format = fmt
        self.device = torch.device(device)
        self.max_len = max_len
        self.rows = (batch, n_kv_heads)
        self.head_dim = head_dim
        self.codec = None
        if fmt is None:
            self.fields = {"values": torch.zeros(max_len, batch, n_kv_heads, head_dim, device=device, dtype=dtype)}
            return
        fmt.check_dim(head_dim)
        # Every position starts as encoded zeros: a CUDA-graph step decodes the whole cache, and
        # masked-out positions must still decode to finite values.
        packed = fmt.encode(torch.zeros(2, batch, n_kv_heads, head_dim, device=device, dtype=dtype))
        reason = per_row_problem(packed, (2, batch, n_kv_heads))
        if reason:
            raise FormatError(f"{fmt.spec}: {reason}")
        self.fields = {name: tensor[:1].expand(max_len, *tensor.shape[1:]).clone()
                       for name, tensor in packed.fields.items()}
        bind = fast_codec(fmt, head_dim, torch.device(device).type) if fast else None
        self.codec = bind(self.fields) if bind is not None else None

    recent_mask = None  # no positions read from elsewhere when recent (kv_techniques/window.py)

    @property
    def base_format(self) -> Format | None:
        """The format of the codes (techniques' stores hide theirs: kv_techniques/stores.py)."""
        return self.format

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.fields.values())

    def scale_underflow(self, length: int) -> int:
        """Blocks among positions 0..length-1 whose fp16 scale underflowed (Packed.scale_underflow)."""
        return 0 if self.format is None else self.format.count_scale_underflow(self.packed(length))

    def write(self, x: torch.Tensor, start: int | torch.Tensor) -> None:
        """Store x [n, batch, kv_heads, head_dim] at positions start..start+n-1.

        `start` may be a device tensor (CUDA-graph decode): then positions are written by index.
        """
        if self.format is None:
            new = {"values": x}
        elif self.codec is not None and self.codec.encode is not None and not isinstance(start, torch.Tensor):
            self.codec.encode(x.to(torch.float32).contiguous(), start)
            return
        else:
            # The format's own input check reads a value back to the host (NaN test), which would
            # stall every layer and break CUDA-graph capture; the cache validated the shape already.
            new = self.format._encode(x.contiguous()).fields
        n = x.shape[0]
        for name, tensor in self.fields.items():
            if isinstance(start, torch.Tensor):
                index = start + torch.arange(n, device=start.device)
                tensor.index_copy_(0, index, new[name].to(tensor.dtype))
            else:
                tensor[start:start + n].copy_(new[name])

    def read(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """Positions 0..length-1, decoded: [length, batch, kv_heads, head_dim]."""
        if self.format is None:
            return self.fields["values"][:length].to(dtype)
        if self.codec is not None and self.codec.decode is not None:
            out = torch.empty(length, *self.rows, self.head_dim, dtype=torch.float32)
            self.codec.decode(length, out)
            return out.to(dtype)
        return self.format.decode(self.packed(length), dtype)

    def packed(self, length: int) -> Packed | None:
        """Positions 0..length-1 as stored (for native attention kernels); None when unquantized."""
        if self.format is None:
            return None
        shape = (length, *self.rows, self.head_dim)
        return Packed(self.format.spec, shape, {k: t[:length] for k, t in self.fields.items()})


class KVCache:
    """Every layer's K and V stores plus the attention backend that reads them. `calibration`: a
    callable giving the model's KVCalibration, for the techniques calibrated on it (None: none)."""

    def __init__(self, config, batch: int, max_len: int, kv: KVPolicy | None = None,
                 attn: str = "dequant_sdpa", device="cpu", dtype: torch.dtype = torch.float32, fast: bool = True,
                 calibration=None):
        if max_len > config.max_seq_len:
            raise ContextLengthError(f"KV cache of {max_len} positions is longer than the model's context "
                                     f"({config.max_seq_len})")
        if kv is not None and kv.n_layers != config.n_layers:
            raise FormatError(f"KV policy {kv.spec} has {kv.n_layers} layers, the model {config.n_layers}")
        self.policy = kv
        self.batch = batch
        self.max_len = max_len
        self.attn_name = attn
        self.attend = get_attention(attn)
        shape = (max_len, batch, config.n_kv_heads, config.head_dim)
        self.layers = []
        formats_seen: dict[str, Format] = {}
        context = CacheContext(config, calibration)

        def make_store(spec: str | None, layer: int | None = None, side: str | None = None):
            if spec is not None and spec not in formats_seen:
                formats_seen[spec] = cache_format(spec)
            fmt = None if spec is None else formats_seen[spec]
            if isinstance(fmt, ChannelGroups):
                return TokenGroupStore(fmt, *shape, device=device, dtype=dtype)
            if isinstance(fmt, KLTFormat):
                stats = context.calibrated(fmt.spec)
                return KLTStore(fmt, stats.unit_second_moment(layer, side), *shape, device=device)
            return KVStore(fmt, *shape, device=device, dtype=dtype, fast=fast)

        for layer in range(config.n_layers):
            pair = []
            for side in ("k", "v"):
                store = make_store(None if kv is None else kv.format_for(layer, side), layer, side)
                for technique in () if kv is None else kv.techniques_for(side):
                    store = technique.wrap(store, make_store, layer, side, context)
                pair.append(store)
            self.layers.append(tuple(pair))

    @property
    def spec(self) -> str:
        return self.policy.spec if self.policy is not None else "f32"

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)

    def scale_underflow(self, length: int) -> int:
        """Blocks among positions 0..length-1 of every store whose fp16 scale underflowed (their
        values decode to zero or to the block minimum; see Packed.scale_underflow)."""
        return sum(store.scale_underflow(length) for pair in self.layers for store in pair)

    def check_room(self, start: int, n: int) -> None:
        if start < 0 or start + n > self.max_len:
            raise ContextLengthError(f"positions {start}..{start + n - 1} do not fit a KV cache of "
                                     f"{self.max_len} positions")
