"""Triton JIT code for the weight matmuls (imported lazily by matmul/triton.py, so that
registering the variants never imports triton).

A program computes a [BM, BN] tile of y = x @ W^T, walking k one 32-value block at a time: the
block's weight codes are loaded and decoded in registers ([BN, 16] nibble bytes for q4_0,
[BN, 32] int8 for q8_0, one fp16 scale per row) and never written anywhere. fused_fma multiplies
the decoded floats into the float32 accumulator; int8_dot multiplies the int8 codes with the
activation's q8_0 codes into an exact int32 block sum, then scales it once (d_x d_w isum). The
products are broadcast [BM, BN, 16] and summed (tl.sum), not tl.dot: that serves BM = 1 (GEMV)
as well, and keeps float32 products exact (tl.dot would round its inputs to tf32 on the GPU).
"""
import triton
import triton.language as tl


@triton.jit
def _tile(m, n, BM: tl.constexpr, BN: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    outs = tl.program_id(1) * BN + tl.arange(0, BN)
    return rows, outs, rows < m, outs < n


@triton.jit
def _store(y_ptr, acc, rows, outs, row_ok, out_ok, n):
    tl.store(y_ptr + rows[:, None] * n + outs[None, :], acc, mask=row_ok[:, None] & out_ok[None, :])


@triton.jit
def _activation_halves(x_ptr, rows, row_ok, k, b, j):
    """Values j and j + 16 of block b of each activation row: [BM, 16] each."""
    base = x_ptr + rows[:, None] * k + b * 32 + j[None, :]
    return tl.load(base, mask=row_ok[:, None], other=0.0), tl.load(base + 16, mask=row_ok[:, None], other=0.0)


@triton.jit
def _dot(a, w):
    """[BM, 16] x [BN, 16] -> [BM, BN]: sum over the 16 values."""
    return tl.sum(a[:, None, :] * w[None, :, :], axis=2)


@triton.jit
def fused_q4_0(x_ptr, d_ptr, qs_ptr, y_ptr, m, n, k, BM: tl.constexpr, BN: tl.constexpr):
    rows, outs, row_ok, out_ok = _tile(m, n, BM, BN)
    j = tl.arange(0, 16)
    nb = k // 32
    acc = tl.zeros((BM, BN), tl.float32)
    for b in range(nb):
        d = tl.load(d_ptr + outs * nb + b, mask=out_ok, other=0.0).to(tl.float32)
        byte = tl.load(qs_ptr + (outs[:, None] * nb + b) * 16 + j[None, :], mask=out_ok[:, None], other=0).to(tl.int32)
        lo = ((byte & 15) - 8).to(tl.float32) * d[:, None]
        hi = ((byte >> 4) - 8).to(tl.float32) * d[:, None]
        x_lo, x_hi = _activation_halves(x_ptr, rows, row_ok, k, b, j)
        acc += _dot(x_lo, lo) + _dot(x_hi, hi)
    _store(y_ptr, acc, rows, outs, row_ok, out_ok, n)


@triton.jit
def fused_q8_0(x_ptr, d_ptr, qs_ptr, y_ptr, m, n, k, BM: tl.constexpr, BN: tl.constexpr):
    rows, outs, row_ok, out_ok = _tile(m, n, BM, BN)
    j = tl.arange(0, 16)
    nb = k // 32
    acc = tl.zeros((BM, BN), tl.float32)
    for b in range(nb):
        d = tl.load(d_ptr + outs * nb + b, mask=out_ok, other=0.0).to(tl.float32)
        codes = qs_ptr + (outs[:, None] * nb + b) * 32 + j[None, :]
        lo = tl.load(codes, mask=out_ok[:, None], other=0).to(tl.float32) * d[:, None]
        hi = tl.load(codes + 16, mask=out_ok[:, None], other=0).to(tl.float32) * d[:, None]
        x_lo, x_hi = _activation_halves(x_ptr, rows, row_ok, k, b, j)
        acc += _dot(x_lo, lo) + _dot(x_hi, hi)
    _store(y_ptr, acc, rows, outs, row_ok, out_ok, n)


@triton.jit
def _activation_block(xq_ptr, xd_ptr, rows, row_ok, nb, b, j):
    """The q8_0 codes (as int32, [BM, 16] halves) and scale of block b of each activation row."""
    base = xq_ptr + (rows[:, None] * nb + b) * 32 + j[None, :]
    a_lo = tl.load(base, mask=row_ok[:, None], other=0).to(tl.int32)
    a_hi = tl.load(base + 16, mask=row_ok[:, None], other=0).to(tl.int32)
    d = tl.load(xd_ptr + rows * nb + b, mask=row_ok, other=0.0).to(tl.float32)
    return a_lo, a_hi, d


@triton.jit
def int8_q4_0(xq_ptr, xd_ptr, d_ptr, qs_ptr, y_ptr, m, n, k, BM: tl.constexpr, BN: tl.constexpr):
    rows, outs, row_ok, out_ok = _tile(m, n, BM, BN)
    j = tl.arange(0, 16)
    nb = k // 32
    acc = tl.zeros((BM, BN), tl.float32)
    for b in range(nb):
        d = tl.load(d_ptr + outs * nb + b, mask=out_ok, other=0.0).to(tl.float32)
        byte = tl.load(qs_ptr + (outs[:, None] * nb + b) * 16 + j[None, :], mask=out_ok[:, None], other=0).to(tl.int32)
        a_lo, a_hi, a_d = _activation_block(xq_ptr, xd_ptr, rows, row_ok, nb, b, j)
        # sum a (q - 8) = sum a q - 8 sum a: the offset once per row, not per product
        offset = 8 * tl.sum(a_lo + a_hi, axis=1)
        isum = _dot(a_lo, byte & 15) + _dot(a_hi, byte >> 4) - offset[:, None]
        acc += isum.to(tl.float32) * (a_d[:, None] * d[None, :])
    _store(y_ptr, acc, rows, outs, row_ok, out_ok, n)


@triton.jit
def int8_q8_0(xq_ptr, xd_ptr, d_ptr, qs_ptr, y_ptr, m, n, k, BM: tl.constexpr, BN: tl.constexpr):
    rows, outs, row_ok, out_ok = _tile(m, n, BM, BN)
    j = tl.arange(0, 16)
    nb = k // 32
    acc = tl.zeros((BM, BN), tl.float32)
    for b in range(nb):
        d = tl.load(d_ptr + outs * nb + b, mask=out_ok, other=0.0).to(tl.float32)
        codes = qs_ptr + (outs[:, None] * nb + b) * 32 + j[None, :]
        w_lo = tl.load(codes, mask=out_ok[:, None], other=0).to(tl.int32)
        w_hi = tl.load(codes + 16, mask=out_ok[:, None], other=0).to(tl.int32)
        a_lo, a_hi, a_d = _activation_block(xq_ptr, xd_ptr, rows, row_ok, nb, b, j)
        isum = _dot(a_lo, w_lo) + _dot(a_hi, w_hi)
        acc += isum.to(tl.float32) * (a_d[:, None] * d[None, :])
    _store(y_ptr, acc, rows, outs, row_ok, out_ok, n)


FUSED = {"q4_0": fused_q4_0, "q8_0": fused_q8_0}
INT8 = {"q4_0": int8_q4_0, "q8_0": int8_q8_0}
