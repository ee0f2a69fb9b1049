"""KV-cache codecs (kernels/codecs/cache_codecs.py) for q8_0, q4_0, q4_1, q8_0_rot and q4_0_rot:
the numba kernels of blocks_numba.py writing into and reading from the store's own tensors."""
from __future__ import annotations

import numpy as np
import torch
from numba import njit

from quantbench.kernels.codecs.blocks_numba import (
    BLOCK,
    DEQUANTIZE,
    FORMATS,
    QUANTIZE,
    ROTATED,
    dequantize_rotated,
    f16_table,
    field_arrays,
    quantize_rotated,
    rotation_arguments,
)
from quantbench.kernels.codecs.cache_codecs import BoundCodec, cache_codec, threads_for
from quantbench.kernels.formats import FormatError
from quantbench.kernels.fwht.numba import LANES

F16_EXPONENT = 0x7C00  # all exponent bits set: inf or NaN


@njit(cache=True)
def _overflowed(bits):
    for i in range(bits.shape[0]):
        if bits[i] & F16_EXPONENT == F16_EXPONENT:
            return True
    return False


def raise_on_overflow(fmt, name: str, bits: np.ndarray) -> None:
    """The torch encoders' check: a scale or norm (fp16 bits) that overflowed float16 is an error."""
    if _overflowed(bits):
        raise FormatError(f"{fmt.spec}: values too large: a block's {name} overflows float16")


def position_blocks(fields: dict[str, torch.Tensor], name: str) -> int:
    """Scales (blocks, or groups) per cache position of the field `name` [max_len, ...]."""
    return fields[name][0].numel()


def _bind_blocks(fmt, inner, fields, quantize, dequantize, width: int) -> BoundCodec:
    """`quantize(x [blocks or groups, width], *arrays)` and `dequantize(*arrays, out [.., width])` on the
    arrays of `inner`'s fields, sliced at the positions of each call."""
    arrays = field_arrays(inner, fields)
    per_position = position_blocks(fields, inner.scale_fields[0])
    rows = fields[inner.scale_fields[0]][0].shape[:-1].numel()
    names = inner.scale_fields

    def encode(x, start):
        lo, hi = start * per_position, (start + x.shape[0]) * per_position
        part = [a[lo:hi] for a in arrays]
        with threads_for(x.shape[0] * rows):
            quantize(x.view(-1, width).numpy(), *part)
        for name, bits in zip(names, part):
            raise_on_overflow(fmt, name, bits)

    def decode(length, out):
        with threads_for(length * rows):
            dequantize([a[:length * per_position] for a in arrays], out.view(-1, width).numpy())

    return BoundCodec(encode, decode)


def _blocks(fmt, dim: int):
    quantize, dequantize, table = QUANTIZE[fmt.name], DEQUANTIZE[fmt.name], f16_table()

    def bind(fields):
        return _bind_blocks(fmt, fmt, fields, lambda x, *a: quantize(x, *a, BLOCK),
                            lambda a, out: dequantize(*a, out, BLOCK, table), BLOCK)

    return bind


def _rotated(fmt, dim: int):
    g, signs, scale, q4 = rotation_arguments(fmt, dim)
    table = f16_table()

    def bind(fields):
        # groups of g values hold g / 32 blocks: slicing by positions keeps whole groups
        return _bind_blocks(fmt, fmt.inner, fields,
                            lambda x, *a: quantize_rotated(x, signs, scale, *a, BLOCK, q4, LANES),
                            lambda a, out: dequantize_rotated(*a, out, signs, scale, BLOCK, q4, table, LANES), g)

    return bind


cache_codec("numba/blocks", serves=lambda fmt: fmt.name in FORMATS)(_blocks)
cache_codec("numba/rotated_blocks", serves=lambda fmt: fmt.name in ROTATED)(_rotated)
