"""W8A8 with torch's own int8 GEMM, `torch._int_mm` (int8 x int8 -> int32: oneDNN on the CPU,
cuBLASLt's IMMA kernels on a GPU): the library kernel a user reaches for first, the peer of the
numba w8a8 variant (numba_token_int8.py).

Weights in `int8` (one fp32 scale per output channel); the activations are quantized per token by
the same format's arithmetic inside the timed call, then y = (x_q W_q^T) * d_x d_w^T in float32. On
a GPU the kernel takes only more than 16 activation rows and k, n multiples of 8 (cuBLASLt's
layout rules); other cases report `unavailable` with that reason.
"""
from __future__ import annotations

import torch

from quantbench.kernels.formats.int_rows import quantize_rows
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import Unavailable, variant

QMAX = 127
CUDA_MIN_ROWS = 17
CUDA_MULTIPLE = 8


def int_mm_problem(m: int, n: int, k: int, device: str) -> str | None:
    """Why torch._int_mm cannot take this product here (None: it can)."""
    if not hasattr(torch, "_int_mm"):
        return f"torch {torch.__version__} has no _int_mm"
    if device.startswith("cuda"):
        if m < CUDA_MIN_ROWS:
            return f"on CUDA it needs more than {CUDA_MIN_ROWS - 1} activation rows, the case has m={m}"
        if k % CUDA_MULTIPLE or n % CUDA_MULTIPLE:
            return f"on CUDA k and n must be multiples of {CUDA_MULTIPLE}, the case has k={k}, n={n}"
    return None


def _int_mm(case):
    """torch._int_mm on per-token int8 activations and per-channel int8 weights, int32 accumulation"""
    x, packed = packed_weights(case)
    (m, k), n = x.shape, packed.shape[0]
    problem = int_mm_problem(m, n, k, case.device)
    if problem:
        raise Unavailable(f"{case.op}/torch/int_mm: {problem}")
    w_codes_t = packed["codes"].t()
    w_scales = packed["scales"].reshape(1, n)

    def run():
        x_codes, x_scales = quantize_rows(x, QMAX)
        acc = torch._int_mm(x_codes, w_codes_t)
        return QuantizedActivations(acc.to(torch.float32) * x_scales.unsqueeze(1) * w_scales, "int8")

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="torch", name="int_mm", formats=("int8",), device="cuda")(_int_mm)
