"""Torch attention variants of `attn_decode` / `attn_prefill` (kernels/attention/spec.py).

- `dequant_sdpa` (the baseline): decode the whole cache, then scaled_dot_product_attention, with
  grouped-query attention folded into the query axis (no repeated K/V), as the model does.
- `native`: the reference for the native kernels: scores and value sums taken in the codes'
  domain (kernels/attention/layout.py: rotated query, rows never rotated back, turbo4's QJL term
  through S q), one rotation of the output at the end.
- `sparse_v`: dense scores, then value rows whose softmax weight is below the threshold for
  every query that reads them are dropped (not renormalized); `SparseVRun.skipped` is the
  fraction of value rows skipped by the last call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from quantbench.kernels.attention.layout import NativePlan, block_kind, is_native, native_plan
from quantbench.kernels.attention.spec import attn_shape, causal_limits
from quantbench.kernels.formats import Format, Packed
from quantbench.kernels.formats.turbo import qjl_scale, unpack_bit_planes, unpack_bits
from quantbench.kernels.registry import variant

# A skipped row moves the output by less than threshold * max|v|; at float32's epsilon the
# skipped rows together add no more than the float rounding a dense kernel is already allowed
# over the ctx-term value sum (kernels/attention/spec.attention_tolerance), so the default passes
# the op's float check by construction. Larger thresholds trade accuracy for skipped rows.
SPARSE_V_THRESHOLD = float(torch.finfo(torch.float32).eps)

ATTN_OPS = ("attn_decode", "attn_prefill")


def causal_mask(n: int, ctx: int, device=None) -> torch.Tensor | None:
    """bool [n, ctx], True where query i may attend (None for a single query: every key)."""
    if n == 1:
        return None
    return torch.arange(ctx, device=device)[None, :] < causal_limits(n, ctx).to(device)[:, None]


def sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, scale=None) -> torch.Tensor:
    """q [b, h, n, w], k/v [ctx, b, kv_heads, w] -> [b, h, n, w] (v's width)."""
    b, h, n, _ = q.shape
    kv_heads = k.shape[2]
    group = h // kv_heads
    qf = q.reshape(b, kv_heads, group * n, q.shape[-1])
    if mask is not None:
        mask = mask.repeat(group, 1)
    out = F.scaled_dot_product_attention(qf, k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3),
                                         attn_mask=mask, scale=scale)
    return out.reshape(b, h, n, v.shape[-1])


def dequant_sdpa(fmt: Format, q: torch.Tensor, pk: Packed, pv: Packed, mask) -> torch.Tensor:
    return sdpa_gqa(q, fmt.decode(pk, q.dtype), fmt.decode(pv, q.dtype), mask)


def rows_in_code_domain(plan: NativePlan, fmt: Format, packed: Packed) -> torch.Tensor:
    """float32 [ctx, b, kv_heads, width]: the stored rows, not rotated back (turbo4: + a * signs)."""
    f = packed.fields
    if block_kind(fmt) is not None:
        inner = getattr(fmt, "inner", fmt)
        return inner.dequantize_blocks(f).reshape(packed.shape)
    g = plan.code_group
    codes = unpack_bit_planes(f["codes"], g)
    rows = torch.from_numpy(plan.codebook)[codes] * f["norms"].float().unsqueeze(-1)
    rows = rows.reshape(packed.shape)
    if plan.qjl:
        signs = unpack_bits(f["qjl"], g).float() * 2 - 1
        signs = signs * (qjl_scale(g) * f["residual_norms"].float()).unsqueeze(-1)
        rows = torch.cat((rows, signs.reshape(packed.shape)), dim=-1)
    return rows


def native_torch(fmt: Format, q: torch.Tensor, pk: Packed, pv: Packed, mask) -> torch.Tensor:
    plan = native_plan(fmt, q.shape[-1])
    k = rows_in_code_domain(plan, fmt, pk)
    v = rows_in_code_domain(plan, fmt, pv)
    return plan.output(sdpa_gqa(plan.query(q), k, v, mask, scale=1.0))


def sparse_v_torch(fmt: Format, q: torch.Tensor, pk: Packed, pv: Packed, mask,
                   threshold: float = SPARSE_V_THRESHOLD) -> tuple[torch.Tensor, float]:
    """(output, fraction of value rows skipped)."""
    b, h, n, d = q.shape
    k = fmt.decode(pk, torch.float32)
    v = fmt.decode(pv, torch.float32)
    kv_heads = k.shape[2]
    qf = q.float().reshape(b, kv_heads, h // kv_heads * n, d)
    scores = torch.einsum("bkqd,cbkd->bkqc", qf, k) / d ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask.repeat(h // kv_heads, 1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    keep = weights.amax(dim=2, keepdim=True) >= threshold  # [b, kv, 1, ctx]
    out = torch.einsum("bkqc,cbkd->bkqd", weights * keep, v)
    return out.reshape(b, h, n, d), 1.0 - float(keep.float().mean())


def _case_cache(case):
    s = attn_shape(case)
    x = case.inputs()
    fmt = case.format_obj
    return fmt, x["q"], fmt.encode(x["k"]), fmt.encode(x["v"]), causal_mask(s.n, s.ctx, case.device)


class SparseVRun:
    """The timed callable of a sparse_v variant; `skipped` is the last call's skipped fraction."""

    def __init__(self, attend, threshold: float):
        self.attend = attend
        self.threshold = threshold
        self.skipped = float("nan")

    def __call__(self):
        out, self.skipped = self.attend(self.threshold)
        return out


for _op in ATTN_OPS:
    @variant(_op, backend="torch", name="dequant_sdpa")
    def _dequant_sdpa(case):
        """decode the whole cache, then torch scaled_dot_product_attention (GQA folded)"""
        fmt, q, pk, pv, mask = _case_cache(case)
        return lambda: dequant_sdpa(fmt, q, pk, pv, mask)

    @variant(_op, backend="torch", name="native", formats=is_native)
    def _native(case):
        """scores and value sums in the codes' domain (rotated query, one output rotation)"""
        fmt, q, pk, pv, mask = _case_cache(case)
        return lambda: native_torch(fmt, q, pk, pv, mask)

    @variant(_op, backend="torch", name="sparse_v")
    def _sparse_v(case):
        """dense scores; value rows whose weight is below the threshold for all their queries dropped"""
        fmt, q, pk, pv, mask = _case_cache(case)
        return SparseVRun(lambda t: sparse_v_torch(fmt, q, pk, pv, mask, t), SPARSE_V_THRESHOLD)
