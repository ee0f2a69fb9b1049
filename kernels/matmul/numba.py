"""Numba CPU variants of the weight matmuls `gemv` / `gemm`, and `linear` for the model.

    fused_fma  q8_0, q4_0, q4_1, turbo2, turbo3, turbo4_mse: up to GEMV_MAX_ROWS activation rows,
               the GEMV kernels (decode in registers, FMA); more rows, the tiled kernel (decode a
               16 x 256 tile into L1, reuse it for every row). The turbo formats are multiplied in
               the rotated domain, after rotating each activation group once
               (x_rot = FWHT(signs * x), what the format applies to a weight group before coding
               it; the rotation is orthonormal and symmetric, so x . w = x_rot . w_rot).
    int8_dot   q8_0, q4_0, q4_1: activations quantized to q8_0 blocks, exact integer dot products
               of 64 weight bytes a step (AVX512-VNNI's vpdpbusd where the CPU has it;
               matmul/numba_int8.py, kernels/common/numba_int_dots.py).

turbo4 (the QJL residual sketch) and the TCQ formats run through torch's dequant_matmul only.
Kernels: matmul/numba_fma.py and matmul/numba_int8.py.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from quantbench.kernels.codecs.blocks_numba import f16_table, half_bits
from quantbench.kernels.common.numba_int_dots import layout_of
from quantbench.kernels.errors import FormatError
from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.matmul.numba_fma import (
    KC,
    NT,
    gemv_q4,
    gemv_q8_0,
    gemv_turbo,
    spread_table,
    tiled_q4,
    tiled_q8_0,
    tiled_turbo,
)
from quantbench.kernels.matmul.numba_int8 import (
    arrange_steps,
    int8_blocks,
    quantize_activations,
    quantize_activations_parallel,
    step_buffers,
)
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import variant

BLOCK_FORMATS = ("q8_0", "q4_0", "q4_1")
TURBO_FORMATS = ("turbo2", "turbo3", "turbo4_mse")
SUPPORTED = {"fused_fma": BLOCK_FORMATS + TURBO_FORMATS, "int8_dot": BLOCK_FORMATS}
GEMV_MAX_ROWS = 4
SPREAD = spread_table()
Q4_OFFSET = {"q4_0": np.int32(8), "q4_1": np.int32(0)}
CODE_OFFSET = {**Q4_OFFSET, "q8_0": np.int32(128)}  # what int8_dot's unsigned weight codes carry


def check_supported(fmt, variant_name: str) -> None:
    if variant_name not in SUPPORTED:
        raise ValueError(f"unknown numba matmul variant {variant_name!r}; known: {', '.join(SUPPORTED)}")
    if fmt.name not in SUPPORTED[variant_name]:
        raise FormatError(f"numba {variant_name} does not support weights in {fmt.spec}; it supports "
                          f"{', '.join(SUPPORTED[variant_name])} (others: torch dequant_matmul)")


NO_MINIMUM = np.empty((0, 0), np.uint16)  # q4_0 and q8_0 have no block minimum
NO_SUMS = np.empty((0, 0), np.float32)  # the activations' block sums, which only q4_1's minimum reads


class NumbaMatmul:
    """One packed weight W [n, k], ready for the kernels (zero-copy views of its fields); calling
    it with activations float32 [m, k] fills out float32 [m, n]."""

    def __init__(self, packed: Packed, fmt, variant_name: str):
        check_supported(fmt, variant_name)
        if packed.format != fmt.spec:
            raise FormatError(f"{fmt.spec}: weights are packed as {packed.format}")
        if len(packed.shape) != 2:
            raise FormatError(f"{fmt.spec}: expected a 2-D weight [n, k], got shape {packed.shape}")
        self.fmt, self.variant = fmt, variant_name
        self.n, self.k = packed.shape
        self.table = f16_table()
        if fmt.name in BLOCK_FORMATS:
            nb = self.k // 32
            self.d_bits = half_bits(packed["d"]).reshape(self.n, nb)
            self.m_bits = half_bits(packed["m"]).reshape(self.n, nb) if "m" in packed.fields else NO_MINIMUM
            self.qs = packed["qs"].reshape(self.n, nb, -1).numpy()
        else:
            g = fmt.group_for(self.k)
            self.group = g
            self.codes = packed["codes"].reshape(self.n, self.k // g, fmt.bits, g // 8).numpy()
            self.norms = half_bits(packed["norms"]).reshape(self.n, self.k // g)
            self.levels = fmt.codebook(g).numpy()
            self.signs = fmt.sign_vector(g)
            self.spread = SPREAD

    def check_activations(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.k:
            raise FormatError(f"activations of shape {tuple(x.shape)} do not match weights [n={self.n}, k={self.k}]")

    def __call__(self, x: torch.Tensor, out: np.ndarray) -> np.ndarray:
        """x float32 [m, k] (CPU, contiguous) -> out [m, n]."""
        if self.variant == "int8_dot":
            return self._int8(x, out)
        name = self.fmt.name
        if name in TURBO_FORMATS:
            xr = self._rotated(x)
            if x.shape[0] <= GEMV_MAX_ROWS:
                gemv_turbo(xr.reshape(x.shape[0], self.k // self.group, self.group), self.codes, self.norms,
                           self.levels, self.table, self.spread, out)
            else:
                tiled_turbo(xr, self.codes, self.norms, self.levels, self.table, self.spread, out, NT, KC)
        elif x.shape[0] <= GEMV_MAX_ROWS:
            xb = x.numpy().reshape(x.shape[0], self.k // 32, 32)
            if name == "q8_0":
                gemv_q8_0(xb, self.d_bits, self.qs, self.table, out, 32)
            else:
                xsum = xb.sum(axis=2) if name == "q4_1" else NO_SUMS
                gemv_q4(xb, xsum, self.d_bits, self.m_bits, self.qs, self.table, out, 16, Q4_OFFSET[name])
        elif name == "q8_0":
            tiled_q8_0(x.numpy(), self.d_bits, self.qs, self.table, out, NT, KC)
        else:
            tiled_q4(x.numpy(), self.d_bits, self.m_bits, self.qs, self.table, out, Q4_OFFSET[name], NT, KC)
        return out

    def _rotated(self, x: torch.Tensor) -> np.ndarray:
        g = self.group
        groups = x.reshape(x.shape[0], self.k // g, g) * self.signs
        if self.fmt.rotate:
            groups = fwht(groups)
        return groups.reshape(x.shape[0], self.k).contiguous().numpy()

    def _int8(self, x: torch.Tensor, out: np.ndarray) -> np.ndarray:
        m, nb = x.shape[0], self.k // 32
        a_bits = np.empty((m, nb), np.uint16)
        aq = np.empty((m, nb, 32), np.int8)
        ad = np.empty((m, nb), np.float32)
        quantize = quantize_activations if m <= GEMV_MAX_ROWS else quantize_activations_parallel
        quantize(x.numpy().reshape(m, nb, 32), a_bits, aq, self.table, ad, 32)
        layout = layout_of(self.qs.dtype)
        xq, xbias, xscale, xmin = step_buffers(m, nb, layout, self.m_bits.shape[0] > 0)
        arrange_steps(aq, ad, layout.nibbles, CODE_OFFSET[self.fmt.name], xq, xbias, xscale, xmin)
        int8_blocks(xq, xbias, xscale, xmin, self.d_bits, self.m_bits, self.qs, out)
        return out


def linear(x: torch.Tensor, packed: Packed, fmt, variant: str) -> torch.Tensor:
    """x [..., k] @ W^T -> [..., n] float32 with W packed in `fmt` (variant: fused_fma or int8_dot).
    Raises FormatError for a format the variant does not support or activations of another k.
    For repeated products with one weight, `prepared_linear` does the per-weight set-up once."""
    return prepared_linear(packed, fmt, variant)(x)


def prepared_linear(packed: Packed, fmt, variant: str):
    """`linear` with the weight bound: returns x -> x @ W^T."""
    matmul = NumbaMatmul(packed, fmt, variant)
    return functools.partial(_apply, matmul)


def _apply(matmul: NumbaMatmul, x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] != matmul.k:
        raise FormatError(f"activations of shape {tuple(x.shape)} do not match weights [n={matmul.n}, k={matmul.k}]")
    rows = x.detach().reshape(-1, matmul.k).to("cpu", torch.float32).contiguous()
    out = np.empty((rows.shape[0], matmul.n), np.float32)
    matmul(rows, out)
    return torch.from_numpy(out).reshape(*x.shape[:-1], matmul.n).to(x.device)


def _factory(variant_name: str):
    def factory(case):
        x, packed = packed_weights(case.with_device("cpu"))
        matmul = NumbaMatmul(packed, case.format_obj, variant_name)
        x = x.contiguous()
        matmul.check_activations(x)
        out = np.empty((x.shape[0], matmul.n), np.float32)
        y = torch.from_numpy(out)
        quantized = variant_name == "int8_dot"

        def run():
            matmul(x, out)
            return QuantizedActivations(y) if quantized else y

        return run

    factory.__doc__ = {
        "fused_fma": "decode in registers (GEMV) or into an L1 tile (more rows), float FMAs; turbo: rotate x once",
        "int8_dot": "x quantized to q8_0 blocks, exact int32 byte dots (VNNI where the CPU has it), "
                    "one float product per lane and step",
    }[variant_name]
    return factory


for _op in ("gemv", "gemm"):
    for _name, _formats in SUPPORTED.items():
        variant(_op, backend="numba", name=_name, formats=_formats, needs=("numba",))(_factory(_name))
