"""GGUF tensor bytes to float32, vectorized over whole tensors for the types model files mostly hold.

Block layouts from ggml's ggml-common.h: Q8_0 = fp16 scale d + 32 int8, x = d * q; Q4_0 = d + 16
bytes of 32 nibbles (element j in the low nibble of byte j, element j + 16 in its high nibble),
x = d * (q - 8); Q4_1 = d + fp16 min m + the same nibbles, x = d * q + m. Other types (k-quants and
the rest) go through the gguf package's numpy dequantizers, row group by row group, which is slower.
"""
from __future__ import annotations

import numpy as np

from .errors import UnsupportedModelError
from .gguf_file import TensorInfo

F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30


def dequantize(info: TensorInfo, raw: np.ndarray) -> np.ndarray:
    """A writable float32 array of the tensor, shaped with the slowest-varying dimension first."""
    shape = tuple(reversed(info.shape))
    if info.ggml_type == F32:
        return raw.view("<f4").astype(np.float32).reshape(shape)
    if info.ggml_type == F16:
        return raw.view("<f2").astype(np.float32).reshape(shape)
    if info.ggml_type == BF16:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if info.ggml_type == Q8_0:
        blocks = raw.reshape(-1, 34)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        return (d * blocks[:, 2:].view(np.int8).astype(np.float32)).reshape(shape)
    if info.ggml_type in (Q4_0, Q4_1):
        head = 2 if info.ggml_type == Q4_0 else 4
        blocks = raw.reshape(-1, head + 16)
        scales = blocks[:, :head].copy().view("<f2").astype(np.float32)
        q = blocks[:, head:]
        values = np.concatenate([q & 15, q >> 4], axis=1).astype(np.float32)
        if info.ggml_type == Q4_0:
            return ((values - 8) * scales[:, :1]).reshape(shape)
        return (values * scales[:, :1] + scales[:, 1:2]).reshape(shape)
    return _with_gguf_package(info, raw, shape)


def _with_gguf_package(info: TensorInfo, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import gguf

    kind = gguf.GGMLQuantizationType(info.ggml_type)
    try:
        data = gguf.quants.dequantize(raw.reshape(shape[:-1] + (-1,)), kind)
    except NotImplementedError:
        raise UnsupportedModelError(f"tensor {info.name}: type {kind.name} cannot be dequantized "
                                    "by the gguf package") from None
    return np.array(data, dtype=np.float32).reshape(shape)
