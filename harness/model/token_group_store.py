"""A KV store in a token-axis format (kernels/formats/token_groups.py: kivi2, kivi4): tokens are kept
unquantized in fp16 until their group of `group` tokens is complete, then the group is quantized
per channel (KIVI's residual and grouping).

Which tokens a query reads quantized depends on the query: at position p the groups complete by
then, ((p + 1) // group) * group tokens, are quantized and the rest not. `recent_mask` tells
attention/windowed.py so, as for a recent window; `read` gives the quantized values where a group
is complete (the incomplete last group as stored), `read_recent` the fp16 ones.
"""
from __future__ import annotations

import torch

from .kv_techniques.stores import host_start


class TokenGroupStore:
    format = None  # not a per-row format: read through `read`, never by a native kernel
    base_format = None

    def __init__(self, fmt, max_len: int, batch: int, n_kv_heads: int, head_dim: int, device, dtype):
        self.token_format = fmt
        self.max_len, self.rows, self.head_dim = max_len, (batch, n_kv_heads), head_dim
        self.device = torch.device(device)
        shape = (max_len, batch, n_kv_heads, head_dim)
        self.recent = torch.zeros(shape, dtype=torch.float16, device=device)
        self.quantized = torch.zeros(shape, dtype=torch.float32, device=device)
        self.complete = 0  # tokens in complete groups

    @property
    def nbytes(self) -> int:
        values = self.max_len * self.rows[0] * self.rows[1] * self.head_dim
        return int(values * self.token_format.bits_per_value_for(self.head_dim) / 8)

    def scale_underflow(self, length: int) -> int:
        return 0

    def packed(self, length: int):
        return None

    def recent_mask(self, positions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """bool [n, length]: key j is still unquantized when the query at position p reads it."""
        g = self.token_format.group
        return keys >= torch.div(positions + 1, g, rounding_mode="floor") * g

    def write(self, x: torch.Tensor, start) -> None:
        start = host_start(start, self.token_format.spec)
        end = start + x.shape[0]
        self.recent[start:end] = x.half()
        g = self.token_format.group
        if start < self.complete:
            self.complete = start // g * g  # a rewrite of earlier positions: their groups again
        while self.complete + g <= end:
            span = slice(self.complete, self.complete + g)
            self.quantized[span] = self.token_format.dequantize(*self.token_format.quantize(self.recent[span]))
            self.complete += g

    def read(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        out = self.quantized[:length].clone()
        if length > self.complete:
            out[self.complete:length] = self.recent[self.complete:length].float()
        return out.to(dtype)

    def read_recent(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        return self.recent[:length].to(dtype)
