"""The fast Walsh-Hadamard transform, the rotated formats' rotation: op `fwht`, spec.py.

    spec.py          the op: rows in, rotated rows out; float64 reference
    torch.py         the reference butterflies in torch
    numba.py         lane-batched butterflies (`fwht_lanes`, which the other numba kernels reuse)
    numba_row.py     one row in vector registers (`unrotate_row`, the rotated formats' row decode)
    triton.py        butterflies in Triton (+ triton_jit.py)
"""
