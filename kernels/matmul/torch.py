"""Torch variants of the weight matmuls: the baseline `dequant_matmul` (decode the whole weight
with the format's own decoder, then one dense matmul: the "cuBLAS" path). For the float formats
decode returns the stored tensor, so `f32` with this variant is the dense float32 matmul that the
quantized variants are compared with."""
from __future__ import annotations

from quantbench.kernels.matmul.spec import packed_weights
from quantbench.kernels.registry import variant


def _dequant_matmul(case):
    """decode W with the format's torch decoder, then x @ W^T"""
    fmt = case.format_obj
    x, packed = packed_weights(case)

    def run():
        return x @ fmt.decode(packed).T

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="torch", name="dequant_matmul")(_dequant_matmul)
