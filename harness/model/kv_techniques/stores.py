"""The store a technique puts around a layer's KVStore: it forwards to the store inside, and hides
the format, so that attention reads it through `read` (module docstring of kv_techniques)."""
from __future__ import annotations

import torch

from quantbench.harness.model.errors import ModelError


class TechniqueStore:
    """Forwards write / read to `inner`; subclasses change what they do."""

    format = None  # never read by a native kernel, which would bypass the technique

    def __init__(self, inner, *others):
        self.inner = inner
        self.stores = (inner, *others)  # every store it holds, for bytes and underflow counts
        self.max_len, self.rows, self.head_dim, self.device = inner.max_len, inner.rows, inner.head_dim, inner.device

    @property
    def base_format(self):
        return self.inner.base_format

    @property
    def recent_mask(self):
        """None, or `fn(positions [n, 1], keys [1, length]) -> bool [n, length]`: which keys a query at
        each position reads from `read_recent` instead of `read` (attention/windowed.py)."""
        return self.inner.recent_mask

    @property
    def nbytes(self) -> int:
        return sum(store.nbytes for store in self.stores)

    def scale_underflow(self, length: int) -> int:
        return sum(store.scale_underflow(length) for store in self.stores)

    def packed(self, length: int):
        return None

    def write(self, x: torch.Tensor, start: int) -> None:
        self.inner.write(x, start)

    def read(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        return self.inner.read(length, dtype)

    def read_recent(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        return self.inner.read_recent(length, dtype)


def host_start(start, technique: str) -> int:
    """`start` as an int; a device tensor (CUDA-graph decode) is refused with the reason."""
    if isinstance(start, torch.Tensor):
        raise ModelError(f"KV technique {technique} needs host positions; CUDA-graph decode writes by device "
                         "index (run without --cuda-graph)")
    return int(start)


class TransformStore(TechniqueStore):
    """Stores forward(x) in `inner` and reads inverse(decoded): x [n, batch, kv_heads, head_dim]."""

    def __init__(self, inner, forward, inverse):
        super().__init__(inner)
        self.forward, self.inverse = forward, inverse

    def write(self, x, start):
        self.inner.write(self.forward(x), start)

    def read(self, length, dtype):
        return self.inverse(self.inner.read(length, torch.float32)).to(dtype)
