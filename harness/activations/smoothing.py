"""SmoothQuant's scales, calibrated on the model's own activations.

s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) per input channel j of a matmul (Xiao et al. 2023, eq. 4):
max|X_j| over every token of the calibration sequences (harness/weights/calibration.py: the end of
the corpus, clear of the scored chunks), max|W_j| over the weight's rows (q, k and v together: they
share one input). alpha = 0.5 moves the difficulty half way from the activations to the weights.
"""
from __future__ import annotations

import sys

import torch

from .folding import FoldedModel
from .linear import input_overrides, overrides_installed

MIN_SCALE = 1e-5


class MaxRecorder:
    """An identity "quantizer" that keeps the running max |x_j| per channel of what passes through it."""

    def __init__(self):
        self.maxima: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        seen = x.detach().reshape(-1, x.shape[-1]).abs().amax(0).float().cpu()
        self.maxima = seen if self.maxima is None else torch.maximum(self.maxima, seen)
        return x


def input_maxima(model, names: list[str], tokens: torch.Tensor, folded: FoldedModel | None = None,
                 progress: bool = True) -> dict[str, torch.Tensor]:
    """max |x_j| of each named matmul's input over every calibration token (tokens [n_seq, seq_len]),
    as the matmul sees it in the folded model (rotated, when it is) or in the model itself."""
    recorders = {name: MaxRecorder() for name in names}
    t = model.transformer
    inputs = {name: [(0, t.w[name.replace(".", "_")].shape[0], recorder)] for name, recorder in recorders.items()}
    linear = input_overrides(model, inputs, folded, {})
    with overrides_installed(model, linear, folded.table if folded else None, folded.norms if folded else None):
        for i in range(tokens.shape[0]):
            if progress:
                print(f"smoothing calibration: sequence {i + 1}/{tokens.shape[0]}", file=sys.stderr, flush=True)
            model.logits(tokens[i:i + 1])
    return {name: r.maxima for name, r in recorders.items()}


def smoothing_scales(maxima: dict[str, torch.Tensor], weight, alpha: float) -> dict[str, torch.Tensor]:
    """s per matmul (float64); `weight(name)` is the weight the scales multiply. A channel whose
    activations or weights are all zero keeps s = 1."""
    scales = {}
    for name, x_max in maxima.items():
        x_max = x_max.double()
        w_max = weight(name).detach().abs().amax(0).double().cpu()
        s = x_max.pow(alpha) / w_max.pow(1 - alpha)
        scales[name] = torch.where((x_max > 0) & (w_max > 0), s, torch.ones_like(s)).clamp_min(MIN_SCALE)
    return scales
