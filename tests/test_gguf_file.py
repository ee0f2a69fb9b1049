"""harness/model/gguf_file.py and gguf_dequant.py against the gguf package: the same metadata, tensor
table and bytes as gguf.GGUFReader, the same float32 values as gguf.quants.dequantize, and one
clear ModelFileError for each way a file can be broken."""
import struct

import gguf
import numpy as np
import pytest

from quantbench.harness.model.errors import ModelFileError
from quantbench.harness.model.gguf_dequant import dequantize
from quantbench.harness.model.gguf_file import GgufFile, TensorInfo

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ2_0"]  # TQ2_0: no format of ours


def _written(path, tensors: dict[str, np.ndarray], raw_types: dict[str, str] | None = None):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_uint32("test.count", 7)
    writer.add_float64("test.scale", 0.125)
    writer.add_bool("test.flag", True)
    writer.add_array("test.strings", ["a", "bé", ""])
    writer.add_array("test.ints", [3, -1, 4])
    for name, data in tensors.items():
        kind = (raw_types or {}).get(name)
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType[kind] if kind else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _quantized(kind: str, rows: int, cols: int, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    if kind == "F32":
        return data
    if kind == "F16":
        return data.astype(np.float16)
    return gguf.quants.quantize(data, gguf.GGMLQuantizationType[kind])


def test_metadata_tensors_and_bytes_match_the_gguf_package(tmp_path):
    tensors = {"a": _quantized("F32", 3, 64, 0), "b": _quantized("Q4_1", 4, 256, 1), "c": _quantized("Q8_0", 2, 32, 2)}
    _written(tmp_path / "t.gguf", tensors, {"b": "Q4_1", "c": "Q8_0"})
    ours, theirs = GgufFile(tmp_path / "t.gguf"), gguf.GGUFReader(tmp_path / "t.gguf")
    for key, f in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        mine = ours.metadata[key]
        assert (np.array_equal(mine, f.contents()) if isinstance(mine, np.ndarray) else mine == f.contents()), key
    assert ours.metadata["test.strings"] == ["a", "bé", ""] and list(ours.metadata["test.ints"]) == [3, -1, 4]
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for t in theirs.tensors:
        info = ours.tensors[t.name]
        assert info.shape == tuple(int(d) for d in t.shape) and info.ggml_type == int(t.tensor_type)
        assert np.array_equal(ours.data(info), np.asarray(t.data).view(np.uint8).reshape(-1)), t.name


@pytest.mark.parametrize("kind", TYPES)
def test_dequantize_equals_the_gguf_package(kind):
    rows, cols = 3, 512
    if kind == "BF16":
        raw = np.random.default_rng(3).integers(0, 1 << 16, rows * cols, dtype=np.uint16)
        raw[(raw & 0x7F80) == 0x7F80] = 0  # no NaN/Inf patterns
        raw = raw.view(np.uint8)
    else:
        raw = np.ascontiguousarray(_quantized(kind, rows, cols, 4)).view(np.uint8).reshape(-1)
    ggml_type = int(gguf.GGMLQuantizationType[kind])
    info = TensorInfo("w", (cols, rows), ggml_type, 0, raw.size)
    values = dequantize(info, raw)
    reference = gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType[kind])
    assert values.shape == (rows, cols) and values.dtype == np.float32 and values.flags.writeable
    np.testing.assert_array_equal(values, reference.astype(np.float32))


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.gguf"
    _written(path, {"w": _quantized("Q8_0", 2, 64, 5)}, {"w": "Q8_0"})
    return path.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"GGML" + b[4:], "not a GGUF file"),
    (lambda b: b[:4] + struct.pack("<I", 9) + b[8:], "version 9 is not supported"),
    (lambda b: b[:4] + struct.pack(">I", 3) + b[8:], "big-endian"),
    (lambda b: b[:60], "truncated or corrupt GGUF header"),
    (lambda b: b[:-40], "past the end of the file"),  # the last 24 bytes are alignment padding
    (lambda b: b"", "not a readable GGUF file"),
])
def test_broken_files_are_one_clear_error(tmp_path, good, damage, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(damage(good))
    with pytest.raises(ModelFileError, match=message):
        GgufFile(path)


def test_unknown_value_type_is_named(tmp_path, good):
    start = good.index(b"test.count") + len("test.count")
    assert struct.unpack_from("<I", good, start) == (int(gguf.GGUFValueType.UINT32),)
    path = tmp_path / "bad.gguf"
    path.write_bytes(good[:start] + struct.pack("<I", 77) + good[start + 4:])
    with pytest.raises(ModelFileError, match="test.count has unknown value type 77"):
        GgufFile(path)
