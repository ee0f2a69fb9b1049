"""GGUF tensor bytes to float32, over whole tensors.

Float types by numpy; a block type through the registered format of the same name, which reads
GGUF's block structs byte for byte (kernels/formats: q8_0, q4_0, q4_1, q5_0, q5_1 and the k-quants,
`from_gguf_bytes` then `decode`); any other type through the gguf package's numpy dequantizers,
row group by row group, which is slower.
"""
from __future__ import annotations

import numpy as np

from quantbench.kernels import formats

from .errors import UnsupportedModelError
from .gguf_file import TensorInfo

F32, F16, BF16 = 0, 1, 30


def dequantize(info: TensorInfo, raw: np.ndarray) -> np.ndarray:
    """A writable float32 array of the tensor, shaped with the slowest-varying dimension first."""
    import gguf

    shape = tuple(reversed(info.shape))
    if info.ggml_type == F32:
        return raw.view("<f4").astype(np.float32).reshape(shape)
    if info.ggml_type == F16:
        return raw.view("<f2").astype(np.float32).reshape(shape)
    if info.ggml_type == BF16:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    kind = gguf.GGMLQuantizationType(info.ggml_type)
    name = kind.name.lower()
    if name in formats.names() and hasattr(formats.get(name), "from_gguf_bytes"):
        fmt = formats.get(name)
        return fmt.decode(fmt.from_gguf_bytes(raw.tobytes(), shape)).numpy()
    try:
        data = gguf.quants.dequantize(raw.reshape(shape[:-1] + (-1,)), kind)
    except NotImplementedError:
        raise UnsupportedModelError(f"tensor {info.name}: type {kind.name} cannot be dequantized "
                                    "by the gguf package") from None
    return np.array(data, dtype=np.float32).reshape(shape)
