"""Round to nearest: each weight tensor encoded by its format, and the quantized-tensor value type."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quantbench.kernels.formats import Format, Packed


@dataclass
class QuantizedTensor:
    """A weight [rows, in] stored in `fmt`; with `input_scale` s (fp16 [in]) the layer computes
    (x / s) @ decode(packed)^T, so the effective weights are decode(packed) / s."""

    fmt: Format
    packed: Packed
    input_scale: torch.Tensor | None = None

    def dequantized(self) -> torch.Tensor:
        w = self.fmt.decode(self.packed, torch.float32)
        return w if self.input_scale is None else w / self.input_scale.float()

    def rows(self, start: int, stop: int) -> "QuantizedTensor":
        """Rows [start, stop): every packed field keeps the rows as its leading dimension, except a
        per-tensor scale (a 0-dim field, nvfp4's), which the rows share."""
        fields = {k: v if v.dim() == 0 else v[start:stop] for k, v in self.packed.fields.items()}
        packed = Packed(self.packed.format, (stop - start, *self.packed.shape[1:]), fields)
        return QuantizedTensor(self.fmt, packed, self.input_scale)

    def to(self, device) -> "QuantizedTensor":
        scale = None if self.input_scale is None else self.input_scale.to(device)
        return QuantizedTensor(self.fmt, self.packed.to(device), scale)

    @property
    def side_bits(self) -> float:
        """Storage beyond the format's own: the fp16 input-channel scales."""
        return 0.0 if self.input_scale is None else 16.0 * self.input_scale.numel()


def rtn_quantize(w: torch.Tensor, fmt: Format) -> QuantizedTensor:
    return QuantizedTensor(fmt, fmt.encode(w.float()))
