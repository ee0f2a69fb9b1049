"""Numba dequantize of the TCQ formats: shift-register table lookup and scale per group, then
the lane-batched FWHT, parallel over group batches."""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.codecs.cache_codecs import PARALLEL_MIN_ROWS, BoundCodec, cache_codec, threads_for
from quantbench.kernels.codecs.rotated_rows_numba import tcq_rows
from quantbench.kernels.codecs.tcq_numba_encode import tcq_encode_parallel, tcq_encode_serial
from quantbench.kernels.common.numba_f16 import f16_bits_to_f32
from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.trellis_numba import group_levels
from quantbench.kernels.formats.turbo_tcq import FP16_MAX
from quantbench.kernels.fwht.numba import LANES, fwht_lanes
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import is_tcq


@njit(parallel=True, cache=True)
def decode_groups(codes, norm_bits, levels, signs, k, L, rotate, lanes, out):
    """TCQ decode of groups: codes [G, g*k/8] uint8, norm_bits [G] uint16 (fp16 bits) -> out [G, g]
    float32 = signs * FWHT(norm * levels[state]), in the float32 order of the torch reference.
    Groups go `lanes` at a time through the lane-batched butterflies of fwht_numba."""
    G, g = out.shape
    scale = np.float32(1.0 / np.sqrt(g))
    batches = (G + lanes - 1) // lanes
    for batch in prange(batches):
        y = np.zeros((g, lanes), np.float32)
        base = batch * lanes
        count = min(lanes, G - base)
        for lane in range(count):
            group_levels(codes[base + lane], levels, k, L, g, lane, y)
            norm = f16_bits_to_f32(norm_bits[base + lane])
            for i in range(g):
                y[i, lane] = y[i, lane] * norm
        if rotate:
            fwht_lanes(y, scale)
        for lane in range(count):
            for i in range(g):
                out[base + lane, i] = y[i, lane] * signs[i]


def decode(fmt, packed, out: torch.Tensor) -> torch.Tensor:
    """Numba decode of a TCQ format's packed data into out (float32, [groups, g])."""
    g = fmt.group_for(packed.shape[-1])
    codes = packed["codes"].reshape(-1, g * fmt.bits // 8).numpy()
    norm_bits = packed["norms"].reshape(-1).view(torch.int16).numpy().view(np.uint16)
    decode_groups(codes, norm_bits, fmt.levels(g), fmt.sign_vector(g).numpy(), fmt.trellis.k, fmt.trellis.L,
                  fmt.rotate, LANES, out.numpy())
    return out


@variant("dequantize", backend="numba", name="parallel", formats=is_tcq, needs=("numba",))
def dequantize_tcq_numba(case):
    """shift-register table lookup and scale per group, lane-batched FWHT, parallel over group batches"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"])
    out = torch.empty(math.prod(packed.shape) // fmt.group_for(packed.shape[-1]), fmt.group_for(packed.shape[-1]))
    return lambda: decode(fmt, packed, out).reshape(packed.shape).to(case.torch_dtype)


@cache_codec("numba/tcq", serves=is_tcq)
def _tcq_cache(fmt, dim: int):
    """The KV-cache codec (kernels/codecs/cache_codecs.py): the fused encode of tcq_numba_encode.py
    straight into the store's fields, and tcq_rows (rotated_rows_numba.py) into the read buffer."""
    g = fmt.group_for(dim)
    levels, signs = fmt.levels(g), fmt.sign_vector(g).numpy()
    table = fmt.table

    def bind(fields):
        per_position = fields["norms"][0].numel()
        rows = fields["norms"][0].shape[:-1].numel()
        codes = fields["codes"].view(-1, g * fmt.bits // 8).numpy()
        norm_bits = fields["norms"].view(torch.int16).view(-1).numpy().view(np.uint16)

        def encode(x, start):
            groups = x.view(-1, g).numpy()
            lo, hi = start * per_position, (start + x.shape[0]) * per_position
            kernel = tcq_encode_serial if x.shape[0] * rows < PARALLEL_MIN_ROWS else tcq_encode_parallel
            worst = kernel(groups, signs, fmt.rotate, LANES, table, levels, fmt.trellis.k, fmt.trellis.L,
                           fmt.encoder == "greedy", fmt.norm_correction, codes[lo:hi], norm_bits[lo:hi])
            if worst > FP16_MAX:
                raise FormatError(f"{fmt.spec}: a group's norm {worst:.4g} exceeds the fp16 range")

        def decode(length, out):
            n = length * per_position
            with threads_for(length * rows):
                tcq_rows(codes[:n], norm_bits[:n], fmt.trellis.k, levels, signs, fmt.rotate, out.view(-1, g).numpy())

        return BoundCodec(encode, decode)

    return bind
