"""Numba CPU variants of the weight matmuls with activations quantized per token to int8 inside the
timed call (loops: numba_token_int8_loops.py):

    w8a8   weights in `int8` (per output channel): one exact int32 dot product per output, the
           SmoothQuant W8A8 GEMM (prefill) and GEMV (decode)
    w4a8   weights in q4_0 / q4_1 (int4, a scale per block of 32): an int32 dot product per block,
           the W4A8 GEMV of a 4-bit weight model with 8-bit activations, on int8_dot's kernels
           (matmul/numba_int8.py) with the token's scale in every block's place

Both return `QuantizedActivations(y, "int8")`: the op checks them against the reference computed
from the activations as the `int8` format encodes them.
"""
from __future__ import annotations

import numpy as np
import torch

from quantbench.kernels.codecs.blocks_numba import half_bits
from quantbench.kernels.common.numba_int_dots import layout_of
from quantbench.kernels.matmul.numba import CODE_OFFSET, NO_MINIMUM
from quantbench.kernels.matmul.numba_int8 import arrange_steps, int8_blocks, step_buffers
from quantbench.kernels.matmul.numba_token_int8_loops import quantize_tokens, quantize_tokens_parallel, w8a8
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import variant

SERIAL_ROWS = 4  # up to this many activation rows, serial quantization: the thread pool would cost more
BLOCK = 32


def _activation_buffers(x, code_dtype):
    """The activations' numpy view, empty codes and scales, and the quantizer for their row count."""
    m, k = x.shape
    codes, scales = np.empty((m, k), code_dtype), np.empty(m, np.float32)
    quantize = quantize_tokens if m <= SERIAL_ROWS else quantize_tokens_parallel
    return x.contiguous().numpy(), codes, scales, quantize


def _w8a8(case):
    """per-token int8 activations x per-channel int8 weights, one int32 dot product per output"""
    x, packed = packed_weights(case)
    xs, codes, scales, quantize = _activation_buffers(x, np.float32)
    w_codes, w_scales = packed["codes"].numpy(), packed["scales"].numpy()
    out = np.empty((x.shape[0], packed.shape[0]), np.float32)

    def run():
        quantize(xs, codes, scales)
        w8a8(codes, scales, w_codes, w_scales, out)
        return QuantizedActivations(torch.from_numpy(out), "int8")

    return run


def _w4a8(case):
    """per-token int8 activations x q4 weight blocks: int8_dot's exact integer block dot products"""
    fmt = case.format_obj
    x, packed = packed_weights(case)
    n, k = packed.shape
    m, nb = x.shape[0], k // BLOCK
    xs, codes, scales, quantize = _activation_buffers(x, np.int8)
    block_scales = np.empty((m, nb), np.float32)
    d_bits = half_bits(packed["d"]).reshape(n, nb)
    m_bits = half_bits(packed["m"]).reshape(n, nb) if "m" in packed.fields else NO_MINIMUM
    qs = packed["qs"].reshape(n, nb, BLOCK // 2).numpy()
    xq, xbias, xscale, xmin = step_buffers(m, nb, layout_of(qs.dtype), m_bits is not NO_MINIMUM)
    out = np.empty((m, n), np.float32)

    def run():
        quantize(xs, codes, scales)
        block_scales[:] = scales[:, None]  # the token's one scale stands in for each block's
        arrange_steps(codes.reshape(m, nb, BLOCK), block_scales, True, CODE_OFFSET[fmt.name], xq, xbias, xscale,
                      xmin)
        int8_blocks(xq, xbias, xscale, xmin, d_bits, m_bits, qs, out)
        return QuantizedActivations(torch.from_numpy(out), "int8")

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="numba", name="w8a8", formats=("int8",), needs=("numba",))(_w8a8)
    variant(_op, backend="numba", name="w4a8", formats=("q4_0", "q4_1"), needs=("numba",))(_w4a8)
