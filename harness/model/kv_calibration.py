"""Statistics of the model's own keys and values, for the KV techniques that are calibrated
(kv_techniques: equalize, reorder; the klt formats): per layer, side and KV head, each channel's
largest magnitude and mean square, and the second moment of the unit vectors, from an unquantized
pass over calibration sequences.

The sequences are GPTQ's (harness/weights/calibration.py): the last 8 x 256 tokens of the default
corpus, which the quality chunks (scored from its start) do not reach. K is taken as the cache
stores it, after RoPE. Computed once per model, on first use.
"""
from __future__ import annotations

import torch

SEQUENCES = 8
LENGTH = 256


class KVCalibration:
    def __init__(self, absmax: dict, mean_square: dict, source: str, unit_moment: dict | None = None):
        self._absmax, self._mean_square, self.source = absmax, mean_square, source
        self._unit_moment = unit_moment or {}

    def absmax(self, layer: int, side: str) -> torch.Tensor:
        """float32 [kv_heads, head_dim]: each channel's largest |value|."""
        return self._absmax[layer, side]

    def mean_square(self, layer: int, side: str) -> torch.Tensor:
        """float32 [kv_heads, head_dim]: each channel's mean of value^2."""
        return self._mean_square[layer, side]

    def unit_second_moment(self, layer: int, side: str) -> torch.Tensor:
        """float64 [kv_heads, head_dim, head_dim]: E[u u^T] of the unit vectors u = x / ||x||."""
        return self._unit_moment[layer, side]


def calibrate(model, n_seq: int = SEQUENCES, length: int = LENGTH) -> KVCalibration:
    from quantbench.harness.weights.calibration import calibration_tokens

    calib = calibration_tokens(model, n_seq=n_seq, seq_len=min(length, model.config.max_seq_len))
    absmax, square, moment = {}, {}, {}
    with torch.no_grad():
        for sequence in calib.tokens:
            tokens = sequence[None, :].to(model.device)
            cache = model.new_cache(1, tokens.shape[1])
            model.forward(tokens, cache, 0)
            for layer, pair in enumerate(cache.layers):
                for side, store in zip("kv", pair):
                    values = store.read(tokens.shape[1], torch.float32)[:, 0].cpu()  # [length, heads, dim]
                    top = values.abs().amax(0)
                    absmax[layer, side] = torch.maximum(absmax.get((layer, side), top), top)
                    square[layer, side] = square.get((layer, side), 0) + values.square().sum(0)
                    unit = (values / values.norm(dim=-1, keepdim=True).clamp_min(1e-30)).double()
                    moment[layer, side] = moment.get((layer, side), 0) + torch.einsum("nhi,nhj->hij", unit, unit)
    count = calib.tokens.numel()
    return KVCalibration(absmax, {key: total / count for key, total in square.items()}, calib.label,
                         {key: total / count for key, total in moment.items()})
