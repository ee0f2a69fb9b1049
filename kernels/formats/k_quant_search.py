"""The sub-block scale searches of llama.cpp's k-quant reference quantizers, in numba.

Each search picks, for one sub-block of 16 or 32 values, a float32 scale (and a min) and the
integer level of every value. They are the algorithms of ggml-quants.c (ggml 0.25.3):

    scale_min_search    make_qkx2_quants: levels 0..nmax, x ~ scale * l + min with min <= 0.
                        Starts from the min/max grid, then tries nstep + 1 grids of
                        (nmax + rmin + rdelta * step) steps over [min, max], each with the weighted
                        least-squares scale and min for its levels, and keeps the one of least
                        weighted error (squared, or absolute with use_mad). q2_k, q4_k, q5_k.
    signed_scale_search make_qx_quants with rmse_type 1: levels -nmax..nmax-1 of x ~ scale * l,
                        weighted by x^2, the grid of the largest magnitude tried at 19 sizes
                        (nmax + 0.1 i, i = -9..9), keeping the best weighted fit. q6_k.
    q3_scale_search     make_q3_quants with do_rmse: levels -nmax..nmax-1, then up to 5 sweeps that
                        move one value at a time to the level its leave-one-out fit prefers, when
                        that improves the x^2-weighted fit. q3_k.

The searches run sums in float32 in ggml's order, one value after the other (no fast-math, no
contraction), so their results and the bytes built from them are llama.cpp's to the bit. Python
literals would make numba compute in float64: every constant is a float32.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

F0 = np.float32(0.0)
F1 = np.float32(1.0)
TENTH = np.float32(0.1)
GROUP_MAX_EPS = np.float32(1e-15)  # below this largest magnitude a sub-block is all zeros
MAGIC = np.float32(12582912.0)  # 1.5 * 2^23
EXACT = np.float32(4194303.0)  # up to here nearest_int is round half to even
WEIGHT_ABS, WEIGHT_RMS_PLUS_ABS = 0, 1  # the weights of scale_min_search: |x| (q2_k), rms(x) + |x| (q4_k, q5_k)


@njit(cache=True)
def _trick_bits(v):
    """ggml's nearest_int past its exact range: the low 23 bits of float32(v + 1.5 * 2^23)."""
    buf = np.empty(1, np.float32)
    buf[0] = v + MAGIC
    return np.int64(buf.view(np.int32)[0] & 0x7FFFFF) - 0x400000


@njit(cache=True, inline="always")
def nearest_int(v):
    """ggml's nearest_int of a float32: round half to even where it is exact (|v| <= 2^22 - 1)."""
    if abs(v) <= EXACT:
        return np.int64(np.rint(v))
    return _trick_bits(v)


@njit(cache=True, inline="always")
def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


@njit(cache=True, inline="always")
def _scale_min(x, w, nmax, rmin, rdelta, nstep, use_mad, levels, trial):
    n = x.shape[0]
    lo = x[0]
    hi = x[0]
    sum_w = w[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        lo = x[i] if x[i] < lo else lo
        hi = x[i] if x[i] > hi else hi
        sum_w += w[i]
        sum_x += w[i] * x[i]
    if lo > F0:
        lo = F0
    if hi == lo:
        levels[:] = 0
        return F0, -lo
    top = np.float32(nmax)
    iscale = top / (hi - lo)
    scale = F1 / iscale
    best = F0
    for i in range(n):
        levels[i] = _clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax)
        diff = scale * np.float32(levels[i]) + lo - x[i]
        best += w[i] * (abs(diff) if use_mad else diff * diff)
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * np.float32(step) + top) / (hi - lo)
        sum_l = F0
        sum_l2 = F0
        sum_xl = F0
        for i in range(n):
            level = _clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax)
            trial[i] = level
            fl = np.float32(level)
            sum_l += w[i] * fl
            sum_l2 += w[i] * fl * fl
            sum_xl += w[i] * fl * x[i]
        det = sum_w * sum_l2 - sum_l * sum_l
        if det > F0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            if this_min > F0:
                this_min = F0
                this_scale = sum_xl / sum_l2
            err = F0
            for i in range(n):
                diff = this_scale * np.float32(trial[i]) + this_min - x[i]
                err += w[i] * (abs(diff) if use_mad else diff * diff)
            if err < best:
                levels[:] = trial
                best = err
                scale = this_scale
                lo = this_min
    return scale, -lo


@njit(parallel=True, cache=True)
def scale_min_search(x, weight_kind, nmax, rmin, rdelta, nstep, use_mad, scales, mins, levels):
    """x float32 [subs, n] -> scales, mins float32 [subs] (value ~ scale * level - min), levels uint8 [subs, n]."""
    subs, n = x.shape
    for s in prange(subs):
        w = np.empty(n, np.float32)
        trial = np.empty(n, np.uint8)
        if weight_kind == WEIGHT_ABS:
            for i in range(n):
                w[i] = abs(x[s, i])
        else:
            sum_x2 = F0
            for i in range(n):
                sum_x2 += x[s, i] * x[s, i]
            rms = np.sqrt(sum_x2 / np.float32(n))
            for i in range(n):
                w[i] = rms + abs(x[s, i])
        scales[s], mins[s] = _scale_min(x[s], w, nmax, rmin, rdelta, nstep, use_mad, levels[s], trial)


@njit(cache=True, inline="always")
def _signed_max(x):
    """The first value of largest magnitude, and that magnitude (ggml's strict-compare loop)."""
    top = F0
    amax = F0
    for i in range(x.shape[0]):
        a = abs(x[i])
        if a > amax:
            amax = a
            top = x[i]
    return top, amax


@njit(cache=True, inline="always")
def _fit(x, iscale, nmax):
    """x^2-weighted sums (sum w x l, sum w l^2) of the levels of grid iscale."""
    sum_lx = F0
    sum_l2 = F0
    for i in range(x.shape[0]):
        fl = np.float32(_clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1))
        w = x[i] * x[i]
        sum_lx += w * x[i] * fl
        sum_l2 += w * fl * fl
    return sum_lx, sum_l2


@njit(cache=True, inline="always")
def _set_levels(x, iscale, nmax, levels):
    for i in range(x.shape[0]):
        levels[i] = nmax + _clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)


@njit(parallel=True, cache=True)
def signed_scale_search(x, nmax, scales, levels):
    """x float32 [subs, n] -> scales float32 [subs] (value ~ scale * (level - nmax)), levels int8 [subs, n]."""
    for s in prange(x.shape[0]):
        row = x[s]
        top, amax = _signed_max(row)
        if amax < GROUP_MAX_EPS:
            levels[s, :] = 0
            scales[s] = F0
            continue
        iscale = np.float32(-nmax) / top
        _set_levels(row, iscale, nmax, levels[s])
        sum_lx, sum_l2 = _fit(row, iscale, nmax)
        scale = sum_lx / sum_l2 if sum_l2 != F0 else F0
        best = scale * sum_lx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(np.float32(nmax) + TENTH * np.float32(step)) / top
            sum_lx, sum_l2 = _fit(row, iscale, nmax)
            if sum_l2 > F0 and sum_lx * sum_lx > best * sum_l2:
                _set_levels(row, iscale, nmax, levels[s])
                scale = sum_lx / sum_l2
                best = scale * sum_lx
        scales[s] = scale


@njit(parallel=True, cache=True)
def q3_scale_search(x, nmax, scales, levels):
    """x float32 [subs, n] -> scales float32 [subs] (value ~ scale * (level - nmax)), levels int8 [subs, n]."""
    subs, n = x.shape
    for s in prange(subs):
        row = x[s]
        top, amax = _signed_max(row)
        if amax < GROUP_MAX_EPS:
            levels[s, :] = 0
            scales[s] = F0
            continue
        iscale = np.float32(-nmax) / top
        sum_lx = F0
        sum_l2 = F0
        for i in range(n):
            level = _clamp(nearest_int(iscale * row[i]), -nmax, nmax - 1)
            levels[s, i] = level
            fl = np.float32(level)
            w = row[i] * row[i]
            sum_lx += w * row[i] * fl
            sum_l2 += w * fl * fl
        for _ in range(5):
            changed = 0
            for i in range(n):
                w = row[i] * row[i]
                old = np.float32(levels[s, i])
                slx = sum_lx - w * row[i] * old
                if slx > F0:
                    sl2 = sum_l2 - w * old * old
                    new = _clamp(nearest_int(row[i] * sl2 / slx), -nmax, nmax - 1)
                    if new != levels[s, i]:
                        fl = np.float32(new)
                        slx += w * row[i] * fl
                        sl2 += w * fl * fl
                        if sl2 > F0 and slx * slx * sum_l2 > sum_lx * sum_lx * sl2:
                            levels[s, i] = new
                            sum_lx = slx
                            sum_l2 = sl2
                            changed += 1
            if not changed:
                break
        for i in range(n):
            levels[s, i] += nmax
        scales[s] = sum_lx / sum_l2 if sum_l2 > F0 else F0
