"""numba-cuda `dequantize` variants for the TCQ formats, one per placement of the reconstruction code:

  const      the level table in constant memory (`cuda.const.array_like`, baked into the kernel)
  shared     the level table copied into shared memory by each block
  registers  no table: the level computed from the state in registers (code=hash only)

One block per group, one thread per value: the thread assembles its state from the circular
L-bit window of the group's stream that ends with its own k bits, looks the level up (or computes
it), scales it by the group's norm, and the block runs the FWHT butterflies in shared memory in the
order of kernels/formats/rotation.py, then applies the signs. numba-cuda is imported inside the factories;
the kernels run on the CPU under NUMBA_ENABLE_CUDASIM=1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from quantbench.kernels.common.cuda_device import CONST_BYTES, SHARED_BYTES, device_view
from quantbench.kernels.registry import Unavailable, variant
from quantbench.kernels.tcq.spec import is_tcq


def _factory(placement: str):
    def factory(case):
        fmt = case.format_obj
        if placement == "registers" and fmt.code != "hash":
            raise Unavailable(f"dequantize/cuda/registers: computes the hash code in registers; "
                              f"{fmt.spec} uses code={fmt.code} (use code=hash)")
        levels = fmt.levels(fmt.group_for(case.dim))
        limit = {"const": CONST_BYTES, "shared": SHARED_BYTES}.get(placement)
        if limit and levels.nbytes > limit:
            raise Unavailable(f"dequantize/cuda/{placement}: a {levels.nbytes // 1024} KiB table "
                              f"exceeds {limit // 1024} KiB (L={fmt.trellis.L})")
        packed = fmt.encode(case.inputs()["x"])
        g = fmt.group_for(case.dim)
        device = case.device
        codes = packed["codes"].reshape(-1, g * fmt.bits // 8).contiguous()
        norm_bits = packed["norms"].reshape(-1).view(torch.int16).contiguous()
        signs = fmt.sign_vector(g).to(device)
        out = torch.empty(codes.shape[0], g, dtype=torch.float32, device=device)
        from quantbench.kernels.codecs.tcq_cuda_jit import make_kernel

        kernel = make_kernel(placement, fmt.trellis.k, fmt.trellis.L, g, fmt.rotate, levels.tobytes())
        scale = np.float32(1.0 / math.sqrt(g))
        args = [device_view(codes), device_view(norm_bits), device_view(signs), scale, device_view(out)]
        if placement == "shared":
            args.append(device_view(torch.from_numpy(levels.copy()).to(device)))
        launch = kernel[codes.shape[0], g]

        def run():
            launch(*args)
            return out.reshape(packed.shape).to(case.torch_dtype)
        return run
    factory.__doc__ = {
        "const": "one block per group; level table in constant memory; FWHT in shared memory",
        "shared": "one block per group; level table copied to shared memory; FWHT in shared memory",
        "registers": "one block per group; hash code computed in registers (code=hash); FWHT in shared memory",
    }[placement]
    return factory


for _placement in ("const", "shared", "registers"):
    variant("dequantize", backend="cuda", name=_placement, formats=is_tcq, needs=("numba-cuda",),
            device="cuda")(_factory(_placement))
