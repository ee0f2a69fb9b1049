"""Numba CPU quantize / dequantize for turbo2, turbo3, turbo4, turbo4_mse.

One kernel per direction serves every turbo format and option set. Groups are processed `lanes` at
a time, transposed into [g, lanes] buffers so that every step, the FWHT butterflies included, is a
SIMD operation across groups (kernels/fwht/numba.py explains why `lanes` is a runtime value); a
prange over blocks of such batches spreads them over the cores. The parallel drivers are thin:
the per-batch work is plain @njit code, which compiles far faster than the same loops inside a
prange body.

The float32 steps repeat kernels/formats/turbo.py in its order, without fast-math; norms are summed
in float64 and rounded float64 -> float32 -> fp16 as the reference does, so the encodings are
bit-identical. turbo4's projection S r is summed in float64 too: its sign could only differ from
the reference's (another summation order) where |S r| is within float64 rounding of zero.
Decoding repeats the reference's float32 steps in order, except that turbo4's S^T sign(S r) is
summed in another order than torch's matmul (tolerance derived in tests/test_turbo_kernels.py).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from quantbench.kernels.common.numba_f16 import f16_bits_to_f32, f32_to_f16_bits
from quantbench.kernels.formats.base import Packed
from quantbench.kernels.formats.turbo import qjl_matrix, qjl_scale
from quantbench.kernels.fwht.numba import BATCHES_PER_TASK, LANES, fwht_lanes, load_lanes
from quantbench.kernels.registry import variant

FORMATS = ("turbo2", "turbo3", "turbo4", "turbo4_mse")


# ---- bit planes ----------------------------------------------------------------------------------
@njit(cache=True)
def _pack_plane(code, shift, count, base, packed, dst):
    """Bit `shift` of code[i, lane] into bit i%8 of byte i//8 of dst[base + lane] (lane < count)."""
    for byte in range(dst.shape[1]):
        packed[:] = 0
        for t in range(8):
            for lane in range(packed.shape[0]):
                packed[lane] |= ((code[byte * 8 + t, lane] >> shift) & 1) << t
        for lane in range(count):
            dst[base + lane, byte] = packed[lane]


@njit(cache=True)
def _unpack_plane(src, base, count, shift, packed, code):
    """Inverse of _pack_plane: OR bit i%8 of byte i//8 of src[base + lane], shifted, into code[i, lane]."""
    packed[:] = 0
    for byte in range(src.shape[1]):
        for lane in range(count):
            packed[lane] = src[base + lane, byte]
        for t in range(8):
            for lane in range(packed.shape[0]):
                code[byte * 8 + t, lane] |= ((packed[lane] >> t) & 1) << shift


# ---- quantize ------------------------------------------------------------------------------------
@njit(cache=True)
def _quantize_batches(first, last, x, lanes, signs, rotate, bounds, levels, norm_correction, smat_t,
                      codes, norms, qjl, rnorms):
    ngroups, g = x.shape
    with_qjl = qjl.shape[0] > 0
    scale = np.float32(1.0 / np.sqrt(g))
    y = np.empty((g, lanes), np.float32)
    code = np.empty((g, lanes), np.int32)
    norm = np.empty(lanes, np.float64)
    norm32 = np.empty(lanes, np.float32)
    div = np.empty(lanes, np.float32)
    acc = np.empty(lanes, np.float64)
    kept = np.zeros(lanes, np.float32)
    packed = np.empty(lanes, np.int32)
    r = np.empty((g, lanes), np.float64)
    proj = np.empty((g, lanes), np.float64)
    for batch in range(first, last):
        base = batch * lanes
        count = min(lanes, ngroups - base)
        load_lanes(x, base, count, y)
        norm[:] = 0.0
        for i in range(g):
            for lane in range(lanes):
                v = np.float64(y[i, lane])
                norm[lane] += v * v
        for lane in range(lanes):
            norm[lane] = np.sqrt(norm[lane])
            norm32[lane] = np.float32(norm[lane])
            div[lane] = norm32[lane] if norm32[lane] > 0 else np.float32(1.0)
        for i in range(g):
            for lane in range(lanes):
                y[i, lane] = (y[i, lane] / div[lane]) * signs[i]
        if rotate:
            fwht_lanes(y, scale)
        code[:, :] = 0
        for b in range(bounds.shape[0]):  # torch.bucketize: count the boundaries strictly below
            for i in range(g):
                for lane in range(lanes):
                    code[i, lane] += np.int32(y[i, lane] > bounds[b])
        if norm_correction:
            acc[:] = 0.0
            for i in range(g):
                for lane in range(lanes):
                    level = np.float64(levels[code[i, lane]])
                    acc[lane] += level * level
            for lane in range(count):
                norms[base + lane] = f32_to_f16_bits(np.float32(norm[lane] / np.sqrt(acc[lane])))
        else:
            for lane in range(count):
                norms[base + lane] = f32_to_f16_bits(np.float32(norm[lane]))
        for k in range(codes.shape[1]):
            _pack_plane(code, k, count, base, packed, codes[:, k, :])
        if not with_qjl:
            continue
        for lane in range(count):
            kept[lane] = f16_bits_to_f32(norms[base + lane])
        acc[:] = 0.0
        for i in range(g):  # residual in the rotated domain, against the decoded (fp16-norm) code
            for lane in range(lanes):
                r[i, lane] = np.float64(y[i, lane] * norm32[lane] - levels[code[i, lane]] * kept[lane])
                acc[lane] += r[i, lane] * r[i, lane]
        for lane in range(count):
            rnorms[base + lane] = f32_to_f16_bits(np.float32(np.sqrt(acc[lane])))
        proj[:, :] = 0.0
        for j in range(0, g, 4):  # proj = S r, summed over j in order, four terms per pass over proj
            for i in range(g):
                s0, s1, s2, s3 = smat_t[j, i], smat_t[j + 1, i], smat_t[j + 2, i], smat_t[j + 3, i]
                for lane in range(lanes):
                    proj[i, lane] = (((proj[i, lane] + s0 * r[j, lane]) + s1 * r[j + 1, lane])
                                     + s2 * r[j + 2, lane]) + s3 * r[j + 3, lane]
        for i in range(g):
            for lane in range(lanes):
                code[i, lane] = proj[i, lane] >= 0
        _pack_plane(code, 0, count, base, packed, qjl)


@njit(parallel=True, cache=True)
def turbo_quantize(x, lanes, signs, rotate, bounds, levels, norm_correction, smat_t, codes, norms, qjl, rnorms):
    """x float32 [G, g] -> codes uint8 [G, bits, g/8], norms fp16 bits [G]; when qjl has rows, also
    the QJL bits uint8 [G, g/8] and residual norms fp16 bits [G] (smat_t: float64 S transposed)."""
    batches = (x.shape[0] + lanes - 1) // lanes
    for task in prange((batches + BATCHES_PER_TASK - 1) // BATCHES_PER_TASK):
        _quantize_batches(task * BATCHES_PER_TASK, min(batches, (task + 1) * BATCHES_PER_TASK), x, lanes,
                          signs, rotate, bounds, levels, norm_correction, smat_t, codes, norms, qjl, rnorms)


# ---- dequantize ----------------------------------------------------------------------------------
@njit(cache=True)
def _dequantize_batches(first, last, codes, norms, lanes, signs, rotate, levels, qjl, rnorms, smat, qjl_coef, out):
    ngroups, bits, nbytes = codes.shape
    g = nbytes * 8
    with_qjl = qjl.shape[0] > 0
    scale = np.float32(1.0 / np.sqrt(g))
    y = np.empty((g, lanes), np.float32)
    code = np.empty((g, lanes), np.int32)
    packed = np.empty(lanes, np.int32)
    norm = np.zeros(lanes, np.float32)
    coef = np.zeros(lanes, np.float32)
    sign = np.empty((g, lanes), np.float32)
    acc = np.empty((g, lanes), np.float32)
    for batch in range(first, last):
        base = batch * lanes
        count = min(lanes, ngroups - base)
        code[:, :] = 0
        for k in range(bits):
            _unpack_plane(codes[:, k, :], base, count, k, packed, code)
        for lane in range(count):
            norm[lane] = f16_bits_to_f32(norms[base + lane])
        for i in range(g):
            for lane in range(lanes):
                y[i, lane] = levels[code[i, lane]] * norm[lane]
        if with_qjl:
            code[:, :] = 0
            _unpack_plane(qjl, base, count, 0, packed, code)
            for i in range(g):
                for lane in range(lanes):
                    sign[i, lane] = np.float32(2 * code[i, lane] - 1)
            acc[:, :] = 0.0
            for i in range(0, g, 4):  # acc = S^T sign, summed over i in order, four terms per pass
                for j in range(g):
                    s0, s1, s2, s3 = smat[i, j], smat[i + 1, j], smat[i + 2, j], smat[i + 3, j]
                    for lane in range(lanes):
                        acc[j, lane] = (((acc[j, lane] + s0 * sign[i, lane]) + s1 * sign[i + 1, lane])
                                        + s2 * sign[i + 2, lane]) + s3 * sign[i + 3, lane]
            for lane in range(count):
                coef[lane] = qjl_coef * f16_bits_to_f32(rnorms[base + lane])
            for j in range(g):
                for lane in range(lanes):
                    y[j, lane] = y[j, lane] + coef[lane] * acc[j, lane]
        if rotate:
            fwht_lanes(y, scale)
        for lane in range(count):
            for i in range(g):
                out[base + lane, i] = y[i, lane] * signs[i]


@njit(parallel=True, cache=True)
def turbo_dequantize(codes, norms, lanes, signs, rotate, levels, qjl, rnorms, smat, qjl_coef, out):
    """Inverse of turbo_quantize into out float32 [G, g] (smat: float32 S)."""
    batches = (codes.shape[0] + lanes - 1) // lanes
    for task in prange((batches + BATCHES_PER_TASK - 1) // BATCHES_PER_TASK):
        _dequantize_batches(task * BATCHES_PER_TASK, min(batches, (task + 1) * BATCHES_PER_TASK), codes, norms,
                            lanes, signs, rotate, levels, qjl, rnorms, smat, qjl_coef, out)


# ---- variants ------------------------------------------------------------------------------------
def _fp16_bits(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16).reshape(-1)


def _no_qjl(g: int, dtype):
    """Empty QJL arguments for the formats without it (zero rows switch the QJL steps off)."""
    return np.empty((0, g // 8), np.uint8), np.empty(0, np.uint16), np.empty((0, 0), dtype)


@variant("quantize", backend="numba", name="parallel", formats=FORMATS, needs=("numba",))
def quantize_turbo_numba(case):
    """32 groups per SIMD batch, prange over batches: norm, signs, FWHT, bucketize, norm correction, bit planes"""
    fmt = case.format_obj
    x = case.inputs()["x"].to(torch.float32).contiguous()
    fmt.check_input(x)
    dim = x.shape[-1]
    g = fmt.group_for(dim)
    lead = (*x.shape[:-1], dim // g)
    groups = x.reshape(-1, g).numpy()
    signs, levels, bounds = fmt.sign_vector(g).numpy(), fmt.codebook(g).numpy(), fmt.boundaries(g).numpy()
    fields = {"codes": torch.empty(*lead, fmt.bits, g // 8, dtype=torch.uint8),
              "norms": torch.empty(lead, dtype=torch.float16)}
    if fmt.qjl:
        fields["qjl"] = torch.empty(*lead, g // 8, dtype=torch.uint8)
        fields["residual_norms"] = torch.empty(lead, dtype=torch.float16)
        qjl, rnorms = fields["qjl"].view(-1, g // 8).numpy(), _fp16_bits(fields["residual_norms"])
        smat_t = np.ascontiguousarray(qjl_matrix(g).double().numpy().T)
    else:
        qjl, rnorms, smat_t = _no_qjl(g, np.float64)
    codes = fields["codes"].view(-1, fmt.bits, g // 8).numpy()
    norms = _fp16_bits(fields["norms"])

    def run():
        turbo_quantize(groups, LANES, signs, fmt.rotate, bounds, levels, fmt.norm_correction, smat_t,
                       codes, norms, qjl, rnorms)
        return Packed(fmt.spec, tuple(x.shape), fields)

    fmt.check_side_data(run())  # once, outside the timed region: a norm that overflowed float16 raises
    return run


@variant("dequantize", backend="numba", name="parallel", formats=FORMATS, needs=("numba",))
def dequantize_turbo_numba(case):
    """32 groups per SIMD batch, prange over batches: bit planes, codebook x norm, (QJL term), inverse FWHT, signs"""
    fmt = case.format_obj
    packed = fmt.encode(case.inputs()["x"])
    g = fmt.group_for(packed.shape[-1])
    signs, levels = fmt.sign_vector(g).numpy(), fmt.codebook(g).numpy()
    codes = packed["codes"].reshape(-1, fmt.bits, g // 8).numpy()
    norms = _fp16_bits(packed["norms"])
    if fmt.qjl:
        qjl, rnorms, smat = packed["qjl"].reshape(-1, g // 8).numpy(), _fp16_bits(packed["residual_norms"]), \
            qjl_matrix(g).numpy()
    else:
        qjl, rnorms, smat = _no_qjl(g, np.float32)
    coef = np.float32(qjl_scale(g))
    out = np.empty((codes.shape[0], g), np.float32)
    dtype = case.torch_dtype

    def run():
        turbo_dequantize(codes, norms, LANES, signs, fmt.rotate, levels, qjl, rnorms, smat, coef, out)
        return torch.from_numpy(out).reshape(packed.shape).to(dtype)

    return run
