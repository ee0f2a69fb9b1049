"""A GGUF file's metadata and tensor table, parsed with struct over a read-only memory map.

The gguf package's reader builds numpy views for every part of every field: 5.3 s for SmolLM2's
98K tokenizer strings, most of loading the embedded model; this reads them in a tenth of a second.
The layout (ggml's docs/gguf.md): the magic "GGUF", a u32 version (2 or 3), a u64 tensor count and
a u64 key/value count, all little-endian; each key a string (u64 byte length, UTF-8 bytes), a u32
value type and the value (an array: u32 element type, u64 count, the elements); then each tensor's
name, u32 dimension count, u64 dimensions (fastest-varying first), u32 ggml type and u64 offset into
the data section, which starts at the next multiple of general.alignment (default 32).
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelFileError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
STRING, ARRAY = 8, 9
NUMBERS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
           12: "<f8"}  # GGUF value type -> numpy dtype


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # as GGUF stores it: fastest-varying dimension first
    ggml_type: int
    offset: int  # from the start of the file
    nbytes: int

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class GgufFile:
    """`metadata` (key -> str, int, float, bool, list of str, or a numpy array for numeric arrays),
    `tensors` (name -> TensorInfo, in file order) and `data(info)`, the tensor's bytes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise ModelFileError(f"{self.path}: not a readable GGUF file ({exc})") from None
        self._pos = 0
        try:
            self._parse()
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{self.path}: truncated or corrupt GGUF header at byte {self._pos} "
                                 f"({type(exc).__name__}: {exc})") from None

    def data(self, info: TensorInfo) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 array over the file map."""
        return np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=info.offset)

    def _parse(self) -> None:
        magic = self._map[:4]
        if magic != MAGIC:
            raise ModelFileError(f"{self.path}: not a GGUF file (starts with {bytes(magic)!r}, not {MAGIC!r})")
        self._pos = 4
        version = self._scalar("<I")
        if version not in VERSIONS:
            endian = " (a big-endian file?)" if struct.unpack("<I", struct.pack(">I", version))[0] in VERSIONS else ""
            raise ModelFileError(f"{self.path}: GGUF version {version} is not supported{endian} "
                                 f"(supported: {', '.join(map(str, VERSIONS))})")
        n_tensors, n_kv = self._scalar("<Q"), self._scalar("<Q")
        self.metadata: dict[str, object] = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._scalar("<I"), key)
        infos = [self._tensor_info() for _ in range(n_tensors)]
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        if alignment <= 0 or alignment & (alignment - 1):
            raise ModelFileError(f"{self.path}: general.alignment {alignment} is not a power of two")
        start = -(-self._pos // alignment) * alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, shape, ggml_type, offset in infos:
            info = TensorInfo(name, shape, ggml_type, start + offset, _nbytes(name, shape, ggml_type))
            if info.offset + info.nbytes > len(self._map):
                raise ModelFileError(f"{self.path}: tensor {name} ends at byte {info.offset + info.nbytes}, "
                                     f"past the end of the file ({len(self._map)} bytes): truncated")
            self.tensors[name] = info

    def _scalar(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self._map, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._scalar("<Q")
        if self._pos + n > len(self._map):
            raise IndexError(f"a string of {n} bytes runs past the end of the file")
        text = self._map[self._pos:self._pos + n].decode("utf-8")
        self._pos += n
        return text

    def _value(self, kind: int, key: str):
        if kind in NUMBERS:
            return self._numbers(kind, 1, key)[0].item()
        if kind == STRING:
            return self._string()
        if kind == ARRAY:
            element, count = self._scalar("<I"), self._scalar("<Q")
            if element == STRING:
                return [self._string() for _ in range(count)]
            if element in NUMBERS:
                return self._numbers(element, count, key)
            if element == ARRAY:
                return [self._value(ARRAY, key) for _ in range(count)]
        raise ModelFileError(f"{self.path}: metadata {key} has unknown value type {kind}")

    def _numbers(self, kind: int, count: int, key: str) -> np.ndarray:
        dtype = np.dtype(NUMBERS[kind])
        if self._pos + count * dtype.itemsize > len(self._map):
            raise IndexError(f"{key}: {count} value(s) run past the end of the file")
        values = np.frombuffer(self._map, dtype=dtype, count=count, offset=self._pos).copy()
        self._pos += count * dtype.itemsize
        return values

    def _tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self._string()
        n_dims = self._scalar("<I")
        if n_dims > 8:
            raise ModelFileError(f"{self.path}: tensor {name} claims {n_dims} dimensions")
        shape = tuple(self._scalar("<Q") for _ in range(n_dims))
        return name, shape, self._scalar("<I"), self._scalar("<Q")


def _nbytes(name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise ModelFileError(f"tensor {name}: unknown ggml type {ggml_type}") from None
    elements = int(np.prod(shape, dtype=np.int64))
    if shape and shape[0] % block:
        raise ModelFileError(f"tensor {name}: rows of {shape[0]} values do not fill whole blocks of {block}")
    return elements // block * block_bytes
