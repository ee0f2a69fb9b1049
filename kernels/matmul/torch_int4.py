"""torch's int4 weight kernel on the CPU, `torch.ops.aten._weight_int4pack_mm_for_cpu` (weights
packed by `_convert_weight_to_int4pack_for_cpu`), as the `gemv` / `gemm` variant `torch/int4pack`
of q4_0: the library kernel beside ours. torch_int4_layout.py maps the format (and says why q4_1 is
not served); the weight is converted once, outside the timed call.

It runs in bfloat16, as the library is used (its AVX2 / AVX-512 kernels take bfloat16 only; in
float32 it is a scalar loop, 15x slower than ours): the activations are cast in the timed call and
the result is checked against the reference with bfloat16-rounded activations, its two other
bfloat16 roundings (q4_0's fp16 scales to 8 significant bits, the output) added to the tolerance
(kernels/matmul/spec.QuantizedActivations). Those roundings are the library's accuracy, not ours:
at 576 x 576 its error is 1.7e-2, 3x the float32 tolerance.

torch keeps a bfloat16 (scale, zero) pair per 32 weights, 4 bytes against q4_0's 2: the byte model
(the op's) counts the format's bytes, so GB/s and % of peak are those of q4_0.
"""
from __future__ import annotations

import torch

from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.matmul.torch_int4_layout import FORMATS, GROUP, codes, scales_and_zeros
from quantbench.kernels.registry import Unavailable, variant

N_MULTIPLE = 16  # torch packs 16 output rows at a time
BF16_ROUNDINGS = ((torch.bfloat16, 2),)  # the scales, the output


def _int4pack(case):
    """torch's int4 weight kernel, bfloat16 activations, scales and output"""
    x, packed = packed_weights(case)
    n = packed.shape[0]
    if n % N_MULTIPLE:
        raise Unavailable(f"{case.op}/torch/int4pack: it needs n a multiple of {N_MULTIPLE}, the case has n={n}")
    weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes(packed), 1)  # innerKTiles: unused on the CPU
    scale_zero = scales_and_zeros(packed, torch.bfloat16)

    def run():
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), weight, GROUP, scale_zero)
        return QuantizedActivations(y.float(), "bf16", BF16_ROUNDINGS)

    return run


for _op in ("gemv", "gemm"):
    variant(_op, backend="torch", name="int4pack", formats=FORMATS)(_int4pack)
