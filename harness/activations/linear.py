"""Matmuls whose input is transformed and quantized before the weight's own matmul runs, and their
installation in the model's forward (`Transformer.linear_overrides`, `embedding_override`,
`weight_overrides`).

The weight's matmul is whatever computes y = x W^T for it: the override quantized weights install
(harness/weights PackedLinear, any --matmul), or the dense product with the folded or stored weight.
The activation side wraps it, so weights and activations compose without knowing each other.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..errors import UserError
from .folding import FoldedModel, matmul_names


class DenseLinear:
    def __init__(self, weight: torch.Tensor):
        self.weight = weight

    def __call__(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        return F.linear(x, self.weight, bias)


class QuantizedInputLinear:
    """y = matmul(quantize(at_run_time(x)), bias). `ranges` are the output rows [start, stop) with
    the quantizer of their input (None: unquantized); rows of one fused weight with different
    quantizers (q int8, k int4) run the matmul once per quantizer, each keeping its own rows."""

    def __init__(self, matmul, at_run_time=None, ranges: list[tuple[int, int, object]] = ()):
        self.matmul = matmul
        self.at_run_time = at_run_time
        groups: dict[int, tuple[object, list[tuple[int, int]]]] = {}
        for start, stop, quantize in ranges:
            groups.setdefault(id(quantize), (quantize, []))[1].append((start, stop))
        self.groups = list(groups.values()) or [(None, [])]

    def __call__(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        if self.at_run_time is not None:
            x = self.at_run_time(x)
        y = None
        for quantize, rows in self.groups:
            part = self.matmul(x if quantize is None else quantize(x), bias)
            if y is None:
                y = part
                continue
            for start, stop in rows:
                y[..., start:stop] = part[..., start:stop]
        return y


def input_overrides(model, inputs: dict[str, list[tuple[int, int, object]]], folded: FoldedModel | None,
                    weight_matmuls: dict) -> dict:
    """The linear overrides: `weight_matmuls` (weight name -> the quantized weights' override), each
    matmul with quantized inputs (`inputs`: name -> output row ranges with their input's quantizer)
    or a part of its input transform at run time wrapped, and the folded weights of the rest dense."""
    t = model.transformer
    out = dict(weight_matmuls)
    for name in matmul_names(model.config):
        matmul = weight_matmuls.get(name)
        if matmul is None and folded is not None and name in folded.weights:
            matmul = DenseLinear(folded.weight(name))
        at_run_time = folded.at_run_time(name) if folded is not None else None
        if name in inputs or at_run_time is not None:
            matmul = matmul or DenseLinear(t.w[name.replace(".", "_")])
            out[name] = QuantizedInputLinear(matmul, at_run_time, inputs.get(name, ()))
        elif matmul is not None:
            out[name] = matmul
    return out


@contextlib.contextmanager
def overrides_installed(model, linear: dict, table: torch.Tensor | None = None, weights: dict | None = None):
    """Within the block the model's forward uses these linear overrides, embedding table and weight
    overrides (norm gains, biases); afterwards the model is as it was."""
    t = model.transformer
    if t.linear_overrides or t.embedding_override is not None or t.weight_overrides:
        raise UserError("the model already has quantized weights or activations installed")
    t.linear_overrides, t.embedding_override, t.weight_overrides = linear, table, dict(weights or {})
    try:
        yield
    finally:
        t.linear_overrides, t.embedding_override, t.weight_overrides = {}, None, {}
