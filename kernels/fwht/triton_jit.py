"""Triton JIT code for the FWHT (imported lazily by fwht/triton.py and codecs/turbo_triton_jit.py, so that
registering the variants never imports triton).

The butterflies run as whole-tile reshapes: at stage h the tile [ROWS, G] is viewed as
[ROWS, G/2h, 2, h], the two halves are split apart, and (a+b, a-b) joined back in place; the
stages and the final scale are those of kernels/formats/rotation.py, so the float32 results equal the torch
reference bit for bit when FMA contraction is off (enable_fp_fusion=False at launch).
"""
import triton
import triton.language as tl


@triton.jit
def butterflies(x, ROWS: tl.constexpr, G: tl.constexpr, LOG_G: tl.constexpr):
    """Unnormalized FWHT along the last axis of the [ROWS, G] tile x (multiply by 1/sqrt(G) after)."""
    for s in tl.static_range(LOG_G):
        y = tl.permute(tl.reshape(x, (ROWS, G // (2 << s), 2, 1 << s)), (0, 1, 3, 2))
        a, b = tl.split(y)
        x = tl.reshape(tl.permute(tl.join(a + b, a - b), (0, 1, 3, 2)), (ROWS, G))
    return x


@triton.jit
def fwht_kernel(x_ptr, out_ptr, rows, scale, G: tl.constexpr, LOG_G: tl.constexpr, ROWS: tl.constexpr):
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    col = tl.arange(0, G)
    offsets = row[:, None] * G + col[None, :]
    live = row[:, None] < rows
    x = tl.load(x_ptr + offsets, mask=live, other=0.0)
    tl.store(out_ptr + offsets, butterflies(x, ROWS, G, LOG_G) * scale, mask=live)
