"""KV-cache codecs (kernels/codecs/cache_codecs.py) for turbo2, turbo3, turbo4 and turbo4_mse: the
numba kernels of turbo_numba.py writing into the store's own tensors, and rotated_rows_numba.py's
reading from them."""
from __future__ import annotations

import numpy as np
import torch

from quantbench.kernels.codecs.blocks_numba_cache import position_blocks, raise_on_overflow
from quantbench.kernels.codecs.cache_codecs import BoundCodec, cache_codec, threads_for
from quantbench.kernels.codecs.rotated_rows_numba import padded_codebook, turbo_rows
from quantbench.kernels.codecs.turbo_numba import FORMATS, turbo_quantize
from quantbench.kernels.formats.turbo import qjl_matrix
from quantbench.kernels.fwht.numba import LANES


def _half_bits(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).reshape(-1).numpy().view(np.uint16)


@cache_codec("numba/turbo", serves=lambda fmt: fmt.name in FORMATS)
def _turbo(fmt, dim: int):
    g = fmt.group_for(dim)
    signs, levels, bounds = fmt.sign_vector(g).numpy(), fmt.codebook(g).numpy(), fmt.boundaries(g).numpy()
    row_levels = padded_codebook(levels)
    smat_t = np.ascontiguousarray(qjl_matrix(g).double().numpy().T) if fmt.qjl else np.empty((0, 0), np.float64)

    def bind(fields):
        per_position = position_blocks(fields, "norms")
        rows = fields["norms"][0].shape[:-1].numel()
        codes = fields["codes"].view(-1, fmt.bits, g // 8).numpy()
        norms = _half_bits(fields["norms"])
        if fmt.qjl:
            qjl, rnorms = fields["qjl"].view(-1, g // 8).numpy(), _half_bits(fields["residual_norms"])
        else:
            qjl, rnorms = np.empty((0, g // 8), np.uint8), np.empty(0, np.uint16)

        def encode(x, start):
            lo, hi = start * per_position, (start + x.shape[0]) * per_position
            side = (qjl[lo:hi], rnorms[lo:hi]) if fmt.qjl else (qjl, rnorms)
            with threads_for(x.shape[0] * rows):
                turbo_quantize(x.view(-1, g).numpy(), LANES, signs, fmt.rotate, bounds, levels, fmt.norm_correction,
                               smat_t, codes[lo:hi], norms[lo:hi], *side)
            raise_on_overflow(fmt, "norms", norms[lo:hi])
            if fmt.qjl:
                raise_on_overflow(fmt, "residual_norms", rnorms[lo:hi])

        def decode(length, out):
            n = length * per_position
            with threads_for(length * rows):
                turbo_rows(codes[:n], norms[:n], row_levels, signs, fmt.rotate, out.view(-1, g).numpy())

        # turbo4's decode sums S^T sign(S r) in another order than torch's matmul: not bit for bit,
        # so its reads stay on the torch code.
        return BoundCodec(encode, None if fmt.qjl else decode)

    return bind
