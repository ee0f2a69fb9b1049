"""numba-cuda `native` attn_decode variants, one per placement of the codebook, so the
constant-vs-shared-memory question is one command (`quantbench bench --op attn_decode --format
turbo3 --backend cuda`):

  const      level table in constant memory
  shared     level table copied to shared memory per block
  registers  turbo2/turbo3: the 4 / 8 levels as immediates picked by the code's bits;
             turbo2_tcq/turbo3_tcq: the level computed from the state (code=hash only)

Same split-K scheme as the Triton kernel (attn_split: query rotated once, exact merge, one rotation
back); the kernels are in kernels/attention/cuda_jit.py. numba-cuda is imported inside the factories;
under NUMBA_ENABLE_CUDASIM=1 the kernels run in the simulator on the CPU, with 32 threads a block
(the simulator runs each thread as a Python thread).
"""
from __future__ import annotations

import torch

from quantbench.kernels.attention import split as attn_split
from quantbench.kernels.attention.spec import attn_shape
from quantbench.kernels.common.cuda_device import CONST_BYTES, SHARED_BYTES, device_view
from quantbench.kernels.registry import Unavailable, simulating_cuda, variant
from quantbench.kernels.tcq.spec import is_tcq

TURBO = ("turbo2", "turbo3")  # the turbo formats whose decode (no QJL) the CUDA kernel implements


def _serves(fmt) -> bool:
    return fmt.name in TURBO or is_tcq(fmt)


THREADS = 128  # threads a block = keys a tile
SIMULATOR_THREADS = 32


def _levels(fmt, g: int):
    if fmt.family == "codebook":
        return fmt.codebook(g).numpy()
    return fmt.levels(g)


def _cache_views(fmt, packed, rows: int, D: int):
    """(codes, fp16 norm bits) as the 2-D arrays cuda_jit_attn's decoders index."""
    g = fmt.group_for(D)
    norms = packed["norms"].reshape(rows, D // g).view(torch.int16).contiguous()
    if fmt.family == "codebook":
        codes = packed["codes"].reshape(rows, D * fmt.bits // 8).contiguous()
    else:
        codes = packed["codes"].reshape(rows * (D // g), g * fmt.bits // 8).contiguous()
    return device_view(codes), device_view(norms)


def _factory(placement: str):
    def factory(case):
        fmt = case.format_obj
        tag = f"attn_decode/cuda/{placement}"
        if placement == "registers" and fmt.family == "trellis" and fmt.code != "hash":
            raise Unavailable(f"{tag}: computes the hash code in registers; {fmt.spec} uses code={fmt.code} "
                              "(use code=hash)")
        shape = attn_shape(case)
        B, H, n, D = shape.batch, shape.heads, shape.n, shape.dim
        g = fmt.group_for(D)
        levels = _levels(fmt, g)
        limit_bytes = {"const": CONST_BYTES, "shared": SHARED_BYTES}.get(placement)
        if limit_bytes and levels.nbytes > limit_bytes:
            raise Unavailable(f"{tag}: a {levels.nbytes // 1024} KiB table exceeds {limit_bytes // 1024} KiB")
        P = B * case.kv_heads
        M = (H // case.kv_heads) * n
        threads = SIMULATOR_THREADS if simulating_cuda() else THREADS
        shared = 4 * (M * D + M * threads + 3 * M) + (levels.nbytes if placement == "shared" else 0)
        if shared > SHARED_BYTES:
            raise Unavailable(f"{tag}: {M} query rows per kv head need {shared // 1024} KiB of shared memory, "
                              f"over {SHARED_BYTES // 1024} KiB (fewer query tokens per call)")
        q, k, v = attn_split.encode_cache(case)
        device = q.device
        splits = attn_split.split_count(case.ctx, P, threads, attn_split.target_programs(device, P))
        chunk = attn_split.split_chunk(case.ctx, splits, threads)
        splits = -(-case.ctx // chunk)
        m = torch.empty(P, splits, M, dtype=torch.float32, device=device)
        l = torch.empty_like(m)
        acc = torch.empty(P, splits, M, D, dtype=torch.float32, device=device)
        rows = case.ctx * P
        args = [device_view(attn_split.query_rows(q, case.kv_heads, fmt)),
                device_view(attn_split.row_limits(H, case.kv_heads, n, case.ctx, device)),
                *_cache_views(fmt, k, rows, D), *_cache_views(fmt, v, rows, D),
                device_view(m), device_view(l), device_view(acc), case.ctx, chunk, P]
        if placement == "shared":
            args.append(device_view(torch.from_numpy(levels.copy()).to(device)))
        from quantbench.kernels.attention.cuda_jit import make_kernel

        kernel = make_kernel(fmt.family, placement, fmt.bits, getattr(getattr(fmt, "trellis", None), "L", 0),
                             M, D, g, threads, levels.tobytes())
        launch = kernel[(P, splits), threads]

        def run():
            launch(*args)
            return attn_split.finish(attn_split.merge(m, l, acc), fmt, B, H, n)
        return run
    factory.__doc__ = {
        "const": "split-K, one block per (batch, kv head, split); codebook in constant memory",
        "shared": "split-K, one block per (batch, kv head, split); codebook copied to shared memory",
        "registers": "split-K, one block per (batch, kv head, split); turbo: levels as immediates "
                     "selected by the code bits; tcq: hash code computed (code=hash)",
    }[placement]
    return factory


for _placement in ("const", "shared", "registers"):
    variant("attn_decode", backend="cuda", name=_placement, formats=_serves, needs=("numba-cuda",),
            device="cuda")(_factory(_placement))
