"""A GGUF block struct as named fields, in the order the struct stores them.

Formats whose blocks hold more than fp16 scales and one code array (q5_0's high bits, the k-quants'
sub-block scales) describe their block as `Field`s; `BlockStruct` turns a Packed value of those
fields into GGUF's array of structs and back, and allocates empty storage for kernels to fill.

A field is either one fp16 per block (`count` None: stored as float16 [..., nblocks]) or `count`
bytes per block (uint8 or int8 [..., nblocks, count]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import FormatError, Packed


@dataclass(frozen=True)
class Field:
    name: str
    count: int | None = None  # None: one fp16 value per block
    dtype: torch.dtype = torch.uint8

    @property
    def nbytes(self) -> int:
        return 2 if self.count is None else self.count


class BlockStruct:
    def __init__(self, block: int, *fields: Field):
        self.block = block
        self.fields = fields
        self.block_bytes = sum(f.nbytes for f in fields)

    def to_bytes(self, packed: Packed) -> bytes:
        columns = [packed[f.name].contiguous().view(torch.uint8).reshape(-1, f.nbytes) for f in self.fields]
        return torch.cat(columns, dim=1).cpu().numpy().tobytes()

    def from_bytes(self, data: bytes, shape, spec: str) -> Packed:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[-1] == 0:
            raise FormatError(f"{spec}: expected a shape with a non-empty last dimension, got {shape}")
        if shape[-1] % self.block:
            raise FormatError(f"{spec}: last dimension {shape[-1]} is not a multiple of its block of {self.block}")
        count = math.prod(shape) // self.block
        if len(data) != count * self.block_bytes:
            raise FormatError(f"{spec}: {len(data)} bytes do not hold shape {shape} "
                              f"({count} blocks of {self.block_bytes} bytes = {count * self.block_bytes})")
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(count, self.block_bytes)
        lead = (*shape[:-1], shape[-1] // self.block)
        fields, start = {}, 0
        for f in self.fields:
            column = raw[:, start:start + f.nbytes].contiguous()
            start += f.nbytes
            if f.count is None:
                fields[f.name] = column.view(torch.float16).reshape(lead)
            else:
                fields[f.name] = column.view(f.dtype).reshape(*lead, f.count)
        return Packed(spec, shape, fields)

    def empty(self, shape, spec: str, device="cpu") -> Packed:
        shape = tuple(shape)
        lead = (*shape[:-1], shape[-1] // self.block)
        fields = {f.name: torch.empty(lead, dtype=torch.float16, device=device) if f.count is None
                  else torch.empty(*lead, f.count, dtype=f.dtype, device=device) for f in self.fields}
        return Packed(spec, shape, fields)
