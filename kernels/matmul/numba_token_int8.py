"""Numba CPU variants of the weight matmuls with activations quantized per token to int8 inside the
timed call (loops: numba_token_int8_loops.py):

    w8a8   weights in `int8` (per output channel): one exact int32 dot product per output, the
           SmoothQuant W8A8 GEMM (prefill) and GEMV (decode)
    w4a8   weights in q4_0 / q4_1 (int4, a scale per block of 32): an int32 dot product per block,
           the W4A8 GEMV of a 4-bit weight model with 8-bit activations

Both return `QuantizedActivations(y, "int8")`: the op checks them against the reference computed
from the activations as the `int8` format encodes them.
"""
from __future__ import annotations

import numpy as np
import torch

from quantbench.kernels.codecs.blocks_numba import f16_table, half_bits
from quantbench.kernels.matmul.numba_token_int8_loops import (
    block_sums,
    quantize_tokens,
    quantize_tokens_parallel,
    w4a8_rows,
    w8a8,
)
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import variant

SERIAL_ROWS = 4  # up to this many activation rows, serial quantization: the thread pool would cost more
BLOCK = 32
Q4_OFFSET = {"q4_0": np.int32(8), "q4_1": np.int32(0)}
NO_MINIMUM = np.empty((0, 0), np.uint16)


def _activation_buffers(x):
    m, k = x.shape
    codes, scales = np.empty((m, k), np.float32), np.empty(m, np.float32)
    quantize = quantize_tokens if m <= SERIAL_ROWS else quantize_tokens_parallel
    return x.contiguous().numpy(), codes, scales, quantize


def _w8a8(case):
    """per-token int8 activations x per-channel int8 weights, one int32 dot product per output"""
    x, packed = packed_weights(case)
    xs, codes, scales, quantize = _activation_buffers(x)
    w_codes, w_scales = packed["codes"].numpy(), packed["scales"].numpy()
    out = np.empty((x.shape[0], packed.shape[0]), np.float32)

    def run():
        quantize(xs, codes, scales)
        w8a8(codes, scales, w_codes, w_scales, out)
        return QuantizedActivations(torch.from_numpy(out), "int8")

    return run


def _w4a8(case):
    """per-token int8 activations x q4 weight blocks, int32 block dot products, one float per block"""
    fmt = case.format_obj
    x, packed = packed_weights(case)
    n, k = packed.shape
    nb = k // BLOCK
    xs, codes, scales, quantize = _activation_buffers(x)
    sums = np.zeros((x.shape[0], nb), np.float32)
    d_bits = half_bits(packed["d"]).reshape(n, nb)
    m_bits = half_bits(packed["m"]).reshape(n, nb) if "m" in packed.fields else NO_MINIMUM
    qs = packed["qs"].reshape(n, nb, BLOCK // 2).numpy()
    table = f16_table()
    out = np.empty((x.shape[0], n), np.float32)

    def run():
        quantize(xs, codes, scales)
        if m_bits is not NO_MINIMUM:
            block_sums(codes, BLOCK, sums)
        w4a8_rows(codes.reshape(-1, nb, BLOCK), scales, sums, d_bits, m_bits, qs, table, out, BLOCK // 2,
                  Q4_OFFSET[fmt.name])
        return QuantizedActivations(torch.from_numpy(out), "int8")

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="numba", name="w8a8", formats=("int8",), needs=("numba",))(_w8a8)
    variant(_op, backend="numba", name="w4a8", formats=("q4_0", "q4_1"), needs=("numba",))(_w4a8)
