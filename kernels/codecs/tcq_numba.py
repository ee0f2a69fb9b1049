"""Numba dequantize of the TCQ formats: shift-register table lookup and scale per group, then
the lane-batched FWHT, parallel over group batches."""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.codecs.cache_codecs import BoundCodec, cache_codec, threads_for
from quantbench.kernels.common.numba_f16 import f16_bits_to_f32
from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.trellis_numba import encode_paths, group_levels, pack_stream
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


@njit(cache=True)
def trellis_inputs(x, signs, rotate, lanes, v, norms):
    """x float32 [G, g] -> what the trellis search sees, formats/turbo_tcq.trellis_inputs step for
    step: norms float64 [G] (the sum of squares in float64), v = sqrt(g) * FWHT(signs * x / norm)
    float32 [G, g], each float32 step rounded as torch rounds it (lane-batched FWHT, fwht_numba)."""
    G, g = x.shape
    scale = np.float32(1.0 / np.sqrt(g))
    root = np.float32(np.sqrt(g))
    y = np.empty((g, lanes), np.float32)
    for base in range(0, G, lanes):
        count = min(lanes, G - base)
        y[:, :] = 0.0
        for lane in range(count):
            total = 0.0
            for i in range(g):
                total += np.float64(x[base + lane, i]) ** 2
            norms[base + lane] = np.sqrt(total)
            norm32 = np.float32(norms[base + lane])
            d = norm32 if norm32 > 0 else np.float32(1.0)
            for i in range(g):
                y[i, lane] = (x[base + lane, i] / d) * signs[i]
        if rotate:
            fwht_lanes(y, scale)
        for lane in range(count):
            for i in range(g):
                v[base + lane, i] = y[i, lane] * root


@cache_codec("numba/tcq", serves=is_tcq)
def _tcq_cache(fmt, dim: int):
    """The KV-cache codec (kernels/codecs/cache_codecs.py): the format's encode with its torch steps
    in numba (trellis_inputs, the search, the stream packing, the norm correction in float64), and
    decode_groups into the read buffer."""
    g = fmt.group_for(dim)
    levels, signs = fmt.levels(g), fmt.sign_vector(g).numpy()
    table = fmt.table

    def bind(fields):
        per_position = fields["norms"][0].numel()
        rows = fields["norms"][0].shape[:-1].numel()
        codes = fields["codes"].view(-1, g * fmt.bits // 8).numpy()
        norm_halves = fields["norms"].view(-1).numpy()

        def encode(x, start):
            groups = x.view(-1, g).numpy()
            v = np.empty_like(groups)
            norm = np.empty(groups.shape[0], np.float64)
            with threads_for(x.shape[0] * rows):
                trellis_inputs(groups, signs, fmt.rotate, LANES, v, norm)
                states = encode_paths(v, table, fmt.trellis, fmt.encoder)
                packed = pack_stream(states, fmt.bits)
            if fmt.norm_correction:
                norm = norm / np.sqrt(np.square(levels[states].astype(np.float64)).sum(-1))
            if np.any(norm > FP16_MAX):
                raise FormatError(f"{fmt.spec}: a group's norm {float(norm.max()):.4g} exceeds the fp16 range")
            lo, hi = start * per_position, (start + x.shape[0]) * per_position
            codes[lo:hi] = packed
            norm_halves[lo:hi] = norm.astype(np.float32).astype(np.float16)

        def decode(length, out):
            n = length * per_position
            with threads_for(length * rows):
                decode_groups(codes[:n], norm_halves[:n].view(np.uint16), levels, signs, fmt.trellis.k,
                              fmt.trellis.L, fmt.rotate, LANES, out.view(-1, g).numpy())

        return BoundCodec(encode, decode)

    return bind
