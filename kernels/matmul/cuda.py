"""numba-cuda `int8_dot` variants of the weight matmuls for q4_0, the GPU pair the seeds compared:
weights staged through registers (`int8_registers`) or through shared memory (`int8_shared`); see
kernels/matmul/cuda_jit.py. The activations are quantized by the q8_0 format's torch encoder on the
device (inside the timed call), so the op checks them against the q8_0-activation reference.
numba-cuda is imported inside the factories; the kernels run on the CPU under NUMBA_ENABLE_CUDASIM=1.
"""
from __future__ import annotations

import torch

from quantbench.kernels import formats
from quantbench.kernels.common.cuda_device import device_view
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import Unavailable, variant


def _factory(placement: str):
    def factory(case):
        from quantbench.kernels.matmul.cuda_jit import CHUNK, KERNELS, TPB

        x, packed = packed_weights(case)
        n, k = packed.shape
        nb = k // 32
        if placement == "shared" and nb % CHUNK:
            raise Unavailable(f"{case.op}/cuda/int8_shared: k={k} is not a multiple of {CHUNK * 32} "
                              f"(the blocks staged per round)")
        q8 = formats.get("q8_0")
        d_bits = device_view(packed["d"].view(torch.int16).contiguous())
        qs = device_view(packed["qs"].reshape(n, nb * 16).contiguous())
        y = torch.empty(x.shape[0], n, dtype=torch.float32, device=x.device)
        out = device_view(y)
        launch = KERNELS[placement][((n + TPB - 1) // TPB, x.shape[0]), TPB]

        def run():
            a = q8.encode(x)
            launch(device_view(a["qs"].reshape(x.shape[0], k)), device_view(a["d"].float()), d_bits, qs, out)
            return QuantizedActivations(y)

        return run

    factory.__doc__ = {"registers": "one thread per output row, its weight bytes loaded into registers",
                       "shared": "rows x 4 blocks of weight bytes staged in shared memory (coalesced loads)"}[placement]
    return factory


for _op in ("gemv", "gemm"):
    for _placement in ("registers", "shared"):
        variant(_op, backend="cuda", name=f"int8_{_placement}", formats=("q4_0",), needs=("numba-cuda",),
                device="cuda")(_factory(_placement))
