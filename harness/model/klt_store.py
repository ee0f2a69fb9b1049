"""A KV store in a calibrated `klt<bits>` format (kernels/formats/klt.py): one KLT rotation and bit
allocation per KV head from the layer's calibrated unit-vector second moment; positions are
stored as their decoded values (what attention reads), and `nbytes` counts the format's bits."""
from __future__ import annotations

import torch

from .kv_techniques.stores import host_start


class KLTStore:
    format = None  # read through `read`, never by a native kernel
    base_format = None
    recent_mask = None

    def __init__(self, fmt, second_moments: torch.Tensor, max_len: int, batch: int, n_kv_heads: int,
                 head_dim: int, device):
        from quantbench.kernels.formats.klt import KLTQuantizer

        self.klt_format = fmt
        self.max_len, self.rows, self.head_dim = max_len, (batch, n_kv_heads), head_dim
        self.device = torch.device(device)
        self.heads = [KLTQuantizer(moment, fmt.average_bits) for moment in second_moments]
        self.values = torch.zeros(max_len, batch, n_kv_heads, head_dim, device=device)

    @property
    def nbytes(self) -> int:
        return int(self.values.numel() * self.klt_format.bits_per_value_for(self.head_dim) / 8)

    def scale_underflow(self, length: int) -> int:
        return 0

    def packed(self, length: int):
        return None

    def write(self, x: torch.Tensor, start) -> None:
        start = host_start(start, self.klt_format.spec)
        for h, quantizer in enumerate(self.heads):
            self.values[start:start + x.shape[0], :, h] = quantizer.roundtrip(x[:, :, h].cpu()).to(self.device)

    def read(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        return self.values[:length].to(dtype)
