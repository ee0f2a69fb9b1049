"""torch's int4 weight kernel on CUDA, tinygemm: `torch.ops.aten._weight_int4pack_mm` (weights packed
by `_convert_weight_to_int4pack`), as `torch/int4pack_cuda`, the GPU form of `torch/int4pack`
(torch_int4.py), on q4_0 with the same mapping (torch_int4_layout.py), converted outside the timed
call. Without a CUDA device it reports `unavailable: no CUDA device`.

tinygemm takes bfloat16 only (activations, scales and zeros, output). The activations are cast in
the timed call and the result checked against the reference with bfloat16-rounded activations,
its three other bfloat16 roundings added to the tolerance (kernels/matmul/spec.QuantizedActivations):
q4_0's scales, each dequantized weight (a bfloat16 FMA), the output.
"""
from __future__ import annotations

import torch

from quantbench.kernels.matmul import torch_int4_layout as layout
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import Unavailable, variant

N_MULTIPLE = 8  # tinygemm's n-tile: the scales must cover whole tiles
BF16_ROUNDINGS = ((torch.bfloat16, 3),)  # the scales, each dequantized weight, the output


def _int4pack_cuda(case):
    """torch's tinygemm int4 kernel, bfloat16 activations and scales"""
    x, packed = packed_weights(case)
    n, k = packed.shape
    if n % N_MULTIPLE:
        raise Unavailable(f"{case.op}/torch/int4pack_cuda: it needs n a multiple of {N_MULTIPLE}, the case has n={n}")
    weight = torch.ops.aten._convert_weight_to_int4pack(layout.cuda_nibbles(layout.codes(packed)),
                                                       layout.inner_k_tiles(k))
    scale_zero = layout.scales_and_zeros(packed, torch.bfloat16)

    def run():
        y = torch.ops.aten._weight_int4pack_mm(x.to(torch.bfloat16), weight, layout.GROUP, scale_zero)
        return QuantizedActivations(y.float(), "bf16", BF16_ROUNDINGS)

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="torch", name="int4pack_cuda", formats=layout.FORMATS, needs=("cuda",),
            device="cuda")(_int4pack_cuda)
