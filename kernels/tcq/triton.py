"""Triton `tcq_encode` variants: the tail-biting Viterbi and greedy searches, one program per group.

Viterbi keeps the 2**L path costs of its group in registers as a [2**k, 2**(L-k)] tile (row j,
column u: state j * 2**(L-k) + u, whose successors are the states u * 2**k + b), so a step is a
column min/argmin, one table lookup per state and a reshape. Back-pointers go to a global scratch
buffer [groups, T, 2**(L-k)] int8 and the program walks them back itself. The same float32
operations as the numpy reference, without FMA contraction, so paths are identical; on a GPU the
registers bound L (the tile is 2**L floats per program).

The JIT code is in tcq/triton_jit.py, imported inside the factories (registering never imports
triton); it is tested on the CPU with TRITON_INTERPRET=1.
"""
from __future__ import annotations

import torch

from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import EncodedPaths, is_tcq


def pack_stream_torch(states: torch.Tensor, k: int) -> torch.Tensor:
    """[G, T] int32 states -> [G, T*k/8] uint8: low k bits, MSB-first (trellis.pack_stream)."""
    G, T = states.shape
    shifts = torch.arange(k - 1, -1, -1, device=states.device, dtype=torch.int32)
    bits = ((states[:, :, None] >> shifts) & 1).reshape(G, T * k // 8, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], device=states.device, dtype=torch.int32)
    return (bits * weights).sum(-1).to(torch.uint8)


def _factory(encoder: str):
    def factory(case):
        fmt = case.format_obj
        v = case.inputs()["v"].contiguous()
        G, T = v.shape
        fmt.trellis.check_length(T)
        k, L = fmt.trellis.k, fmt.trellis.L
        table = torch.from_numpy(fmt.table.copy()).to(v.device)
        states = torch.empty(G, T, dtype=torch.int32, device=v.device)
        from quantbench.kernels.tcq.triton_jit import greedy_kernel, viterbi_kernel
        if encoder == "viterbi":
            back = torch.empty(G * T * fmt.trellis.n_prev, dtype=torch.int8, device=v.device)

            def search():
                viterbi_kernel[(G,)](v, table, back, states, T, k, L, enable_fp_fusion=False)
        else:
            def search():
                greedy_kernel[(G,)](v, table, states, T, k, L, enable_fp_fusion=False)

        def run():
            search()
            return EncodedPaths(encoder, pack_stream_torch(states, k))
        return run
    factory.__doc__ = f"Triton {encoder} search, one program per group"
    return factory


for _encoder in ("viterbi", "greedy"):
    variant("tcq_encode", backend="triton", name=_encoder, formats=is_tcq, needs=("triton",),
            device="cuda")(_factory(_encoder))
