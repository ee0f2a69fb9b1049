"""GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", arXiv 2210.17323, Algorithm 1) with the format's own quantizer inside (inner.py).

Minimizes ||X W^T - X Q^T||^2 row by row through H = 2 X^T X: columns are quantized in order, each
column's error, divided by the diagonal of the upper Cholesky factor of H^-1, is pushed onto the
columns not yet quantized; updates inside a block of `block_size` columns (rounded up to whole groups of the format) are
immediate, the rest is applied once per block (the "lazy batch" update). Options:

  damp      dampening: H += damp * mean(diag H) * I (dead inputs, diag 0, get weight 0 and H_ii = 1)
  act_order quantize columns in order of decreasing H_ii; the format's side data (block scales,
            group norms) is then fixed up front from the starting weights ("static groups"), since
            a group's columns are no longer consecutive; without it, a group's side data is fixed
            when its first column is reached, from the weights as updated so far.
  alpha     per-input-channel scaling s_i = H_ii^alpha (normalized to geometric mean 1, stored fp16):
            W <- W diag(s), H <- diag(1/s) H diag(1/s); the layer computes (x / s) Q^T, so s is kept
            with the quantized weights and costs 16 bits per input channel.

For rotated formats everything runs in the format's rotated domain (W M, M^T H M; see inner.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from quantbench.kernels.formats import Format, FormatError

from .inner import inner_quantizer
from .rtn import QuantizedTensor


@dataclass(frozen=True)
class GPTQOptions:
    damp: float = 0.01
    block_size: int = 128
    act_order: bool = False
    alpha: float = 0.0  # 0: no per-input-channel scaling

    def __post_init__(self):
        if not self.damp > 0:
            raise FormatError(f"gptq: dampening must be positive, got {self.damp}")
        if self.block_size < 1:
            raise FormatError(f"gptq: block size must be at least 1, got {self.block_size}")

    @property
    def label(self) -> str:
        text = f"gptq:damp={self.damp:g}"
        if self.act_order:
            text += ":act_order=1"
        if self.alpha:
            text += f":alpha={self.alpha:g}"
        return text


def channel_scales(hessian: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_i = H_ii^alpha, geometric mean 1 (dead channels 1), rounded to fp16 as stored."""
    diag = hessian.diagonal().double()
    alive = diag > 0
    s = torch.ones_like(diag)
    s[alive] = diag[alive] ** alpha
    s[alive] /= s[alive].log().mean().exp()
    return s.half()


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, fmt: Format,
                  options: GPTQOptions = GPTQOptions()) -> QuantizedTensor:
    """Quantize w [rows, in] in `fmt` against the input Hessian [in, in] (any positive multiple of X^T X)."""
    rows, in_dim = w.shape
    if hessian.shape != (in_dim, in_dim):
        raise FormatError(f"gptq: Hessian {tuple(hessian.shape)} does not match weights {tuple(w.shape)}")
    inner = inner_quantizer(fmt, in_dim)
    w = w.double()
    h = hessian.double().clone()
    scale = None
    if options.alpha:
        scale = channel_scales(h, options.alpha)
        s = scale.double()
        w = w * s
        h = h / s[:, None] / s[None, :]
    m = inner.rotation()
    if m is not None:
        m = m.double()
        w, h = w @ m, m.T @ h @ m
    with _one_thread():
        q, codes, params = _gptq_columns(w, h, inner, options)
    packed = inner.pack(codes, params)
    return QuantizedTensor(fmt, packed, scale)


@contextlib.contextmanager
def _one_thread():
    """The column loop is thousands of small ops: with several threads on a busy CPU, thread hand-offs
    cost far more than the arithmetic (measured about 8x slower with 2 threads on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _gptq_columns(w, h, inner, options: GPTQOptions):
    rows, n = w.shape
    g = inner.group
    block_size = -(-options.block_size // g) * g  # whole groups per block: a group's side data sees its updated columns
    dead = h.diagonal() == 0
    h[dead, dead] = 1
    w = w.clone()
    w[:, dead] = 0
    h += options.damp * h.diagonal().mean() * torch.eye(n, dtype=h.dtype)
    perm = torch.argsort(h.diagonal(), descending=True) if options.act_order else torch.arange(n)
    inv_perm = torch.argsort(perm)
    groups = None
    if options.act_order:  # static groups: side data from the starting weights
        groups = [inner.group_params(w[:, j:j + g]) for j in range(0, n, g)]
    w, h = w[:, perm], h[perm][:, perm]
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    codes = torch.zeros(rows, n, dtype=torch.long)
    lazy: dict[int, dict] = {}
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            grp = col // g
            if groups is not None:
                params = groups[grp]
            else:
                if col % g == 0:  # natural order: the group's first column; later columns as updated so far
                    lazy[grp] = inner.group_params(w1[:, i:i + g])
                params = lazy[grp]
            c, value = inner.quantize_column(w1[:, i].float(), params)
            codes[:, col] = c
            q[:, i1 + i] = value.double()
            err = (w1[:, i] - q[:, i1 + i]) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    params = groups if groups is not None else [lazy[k] for k in sorted(lazy)]
    return q[:, inv_perm], codes, params
