"""What native attention kernels need to read a packed KV cache without dequantizing it.

A `NativePlan` (one per format and head_dim) turns the query into the domain the codes live in
and the accumulated values back:

- rotated formats (turbo*, *_rot): the query is rotated once per head (signs + FWHT per group,
  as the format rotates keys), scores are taken against the stored rotated values, the values
  are accumulated in the rotated domain and the output is rotated back once. The rotation is
  orthonormal, so q.k = (Rq).(Rk) and sum_j p_j v_j = R^T sum_j p_j (R v_j).
- turbo4 (TurboQuant Q_prod): a key's rotated reconstruction is norm * c[code] + a * S^T s with
  s = the stored QJL signs, S the fixed Gaussian matrix, a = qjl_scale * residual_norm. Its score
  term q.(a S^T s) = a s.(S q), so the query is extended to width 2*dim with S q per group and the
  key row to [norm * c[code], a * s]; the values accumulate the same 2*dim row and the output adds
  (accumulated a*s) @ S per group once at the end (kernels/formats/turbo.py decode, reordered).

`rows(packed)` views the stored fields as [ctx, batch*kv_heads, bytes] arrays (no copy) for the
numba kernels; fp16 scales travel as uint16 bits (numba has no float16 on the CPU).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import Format, Packed
from quantbench.kernels.formats.ggml_blocks import Q4_0, Q4_1, Q8_0, GGMLBlockFormat
from quantbench.kernels.formats.rotated_blocks import RotatedBlockFormat
from quantbench.kernels.formats.rotation import fwht, random_signs
from quantbench.kernels.formats.turbo import TurboFormat, qjl_matrix, qjl_scale

KIND_Q8_0, KIND_Q4_0, KIND_Q4_1, KIND_TURBO, KIND_TCQ = range(5)  # KIND_TCQ: kernels/attention/tcq_numba.py
BLOCK_KINDS = {Q8_0: KIND_Q8_0, Q4_0: KIND_Q4_0, Q4_1: KIND_Q4_1}  # block layout -> kernel kind


def block_kind(fmt: Format) -> int | None:
    """The kernels' kind for a format that stores one of the GGML block layouts they decode
    (plain, or inside the rotated block formats); None for any other format."""
    if isinstance(fmt, RotatedBlockFormat):
        return BLOCK_KINDS.get(type(fmt.inner))
    if isinstance(fmt, GGMLBlockFormat):
        return BLOCK_KINDS.get(type(fmt))
    return None


def is_native(fmt: Format) -> bool:
    """The formats the native kernels read: the GGML block layouts and every turbo codebook format."""
    return block_kind(fmt) is not None or isinstance(fmt, TurboFormat)


def unsupported_reason(fmt: Format | None) -> str | None:
    """Why the native kernels cannot read this store (None: they can)."""
    if fmt is None:
        return "the store is unquantized"
    if not is_native(fmt):
        served = [n for n in formats.names() if is_native(formats.get(n))]
        return f"no native kernel for {fmt.name} (native formats: {', '.join(served)})"
    return None


@dataclass(frozen=True, eq=False)
class NativePlan:
    kind: int
    dim: int
    group: int  # rotation group size; 0: no rotation
    signs: bool
    fwht: bool  # turbo's rotate option (signs may apply without the FWHT)
    qjl: bool
    bits: int
    code_group: int  # turbo: values per packed group (norm, bit planes); blocks: 0
    codebook: np.ndarray  # float32 levels (turbo), else empty

    @property
    def width(self) -> int:
        """Row width the kernels work in: dim, or 2*dim for turbo4 (codes + QJL signs)."""
        return 2 * self.dim if self.qjl else self.dim

    @functools.cached_property
    def _query_matrix(self) -> torch.Tensor:
        """float64 [dim, width]: q -> q in the codes' domain (a linear map, applied to the identity)."""
        return self._to_codes(torch.eye(self.dim, dtype=torch.float64))

    @functools.cached_property
    def _output_matrix(self) -> torch.Tensor:
        """float64 [width, dim]: accumulated rows -> output."""
        return self._from_codes(torch.eye(self.width, dtype=torch.float64))

    def query(self, q: torch.Tensor) -> torch.Tensor:
        """q [..., dim] -> float32 [..., width]: scaled by 1/sqrt(dim), in the codes' domain.
        The map runs as one float64 matrix product, so the result is rounded once."""
        if not (self.group or self.qjl):
            return (q.float() * (1.0 / math.sqrt(self.dim))).contiguous()
        return (q.double() @ self._query_matrix * (1.0 / math.sqrt(self.dim))).float().contiguous()

    def output(self, acc: torch.Tensor) -> torch.Tensor:
        """Accumulated rows [..., width] -> the attention output [..., dim] in float32."""
        if not (self.group or self.qjl):
            return acc
        return (acc.double() @ self._output_matrix).float()

    def _to_codes(self, q: torch.Tensor) -> torch.Tensor:
        if self.group:
            grouped = _groups(q, self.group)
            if self.signs:
                grouped = grouped * random_signs(self.group).double()
            if self.fwht:
                grouped = fwht(grouped)
            q = grouped.reshape(q.shape)
        if self.qjl:
            projected = _groups(q, self.code_group) @ qjl_matrix(self.code_group).double().T  # S q per group
            q = torch.cat((q, projected.reshape(q.shape)), dim=-1)
        return q

    def _from_codes(self, acc: torch.Tensor) -> torch.Tensor:
        d = self.dim
        out = acc[..., :d]
        if self.qjl:
            signs = _groups(acc[..., d:], self.code_group) @ qjl_matrix(self.code_group).double()
            out = out + signs.reshape(out.shape)
        if self.group:
            grouped = _groups(out, self.group)
            if self.fwht:
                grouped = fwht(grouped)
            if self.signs:
                grouped = grouped * random_signs(self.group).double()
            out = grouped.reshape(out.shape)
        return out

    def rows(self, packed: Packed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(codes uint8, extra uint8, scales uint16, scales2 uint16) as views of the packed fields.

        codes is [ctx, batch*kv_heads, units, bytes]: the blocks x their code bytes, or a turbo row's
        (group, bit plane) pairs x the plane's bytes, so that the kernels index the innermost bytes
        by a loop variable. The others are [ctx, batch*kv_heads, -1]. Blocks: scales = d, scales2 =
        m (q4_1). Turbo: scales = norms, extra = QJL sign bytes and scales2 = residual norms
        (turbo4). Absent fields are empty [ctx, rows, 0] arrays.
        """
        ctx, batch, kv_heads = packed.shape[:3]
        shape = (ctx, batch * kv_heads, -1)

        def u8(t, unit=None):
            tail = (-1, unit) if unit else (-1,)
            return t.contiguous().view(torch.uint8).reshape(ctx, batch * kv_heads, *tail).numpy()

        def u16(t):
            return t.contiguous().view(torch.int16).reshape(shape).numpy().view(np.uint16)

        empty8 = np.zeros((ctx, batch * kv_heads, 0), np.uint8)
        empty16 = np.zeros((ctx, batch * kv_heads, 0), np.uint16)
        f = packed.fields
        if self.kind == KIND_TURBO:
            codes = u8(f["codes"], self.code_group // 8)
            if self.qjl:
                return codes, u8(f["qjl"]), u16(f["norms"]), u16(f["residual_norms"])
            return codes, empty8, u16(f["norms"]), empty16
        return u8(f["qs"], f["qs"].shape[-1]), empty8, u16(f["d"]), u16(f["m"]) if "m" in f else empty16


def _groups(x: torch.Tensor, g: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], x.shape[-1] // g, g)


@functools.lru_cache(maxsize=None)
def _plan(spec: str, dim: int) -> NativePlan:
    fmt = formats.get(spec)
    fmt.check_dim(dim)
    if block_kind(fmt) is not None:
        rotated = isinstance(fmt, RotatedBlockFormat)
        return NativePlan(block_kind(fmt), dim, fmt.group_for(dim) if rotated else 0,
                          rotated and fmt.signs, rotated, False, 0, 0, np.zeros(0, np.float32))
    g = fmt.group_for(dim)
    rotated = fmt.rotate or fmt.signs
    return NativePlan(KIND_TURBO, dim, g if rotated else 0, fmt.signs, fmt.rotate, fmt.qjl, fmt.bits, g,
                      fmt.codebook(g).numpy().astype(np.float32))


def native_plan(fmt: Format, dim: int) -> NativePlan:
    reason = unsupported_reason(fmt)
    if reason:
        raise ValueError(f"native attention: {reason}")
    return _plan(fmt.spec, dim)


def qjl_coefficient(plan: NativePlan) -> float:
    return qjl_scale(plan.code_group) if plan.qjl else 0.0
