"""The ops `attn_decode` and `attn_prefill`: attention of a few (decode) or a block (prefill) of
query tokens over a KV cache stored in any registered format.

Case dims (all required): batch, heads (query heads), kv_heads (heads must be a multiple),
n (query tokens), ctx (cached positions, the queries included), dim (head_dim).
Both ops are causal: the n queries sit at positions ctx-n .. ctx-1, so query i sees keys
0 .. ctx-n+i (for n = 1, the whole cache). They differ only in their default cases.

Inputs (seeded, float32, on case.device):
    q  [batch, heads, n, dim]
    k  [ctx, batch, kv_heads, dim]   position-major like the model's KVStore
    v  [ctx, batch, kv_heads, dim]
K has outlier channels, as real keys do (a few channels carry most of the energy after RoPE):
`K_OUTLIER_CHANNELS` channels, picked by the seed, are scaled by `K_OUTLIER_SCALE`.
Variants encode k and v with case.format_obj outside the timed region (float formats: a cast)
and return float32 [batch, heads, n, dim].

Reference: float64 attention over the *dequantized* cache (format.roundtrip), so a variant's
error is the kernel's alone; `quantization_error` reports what the format itself costs.
Bytes: K and V of ctx positions as packed (format.bytes_for) plus q and out in float32.
FLOPs: 4 * batch * heads * n * ctx * dim (QK^T and PV) plus the format's decode of K and V.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from quantbench.kernels import formats
from quantbench.kernels.errors import UserError
from quantbench.kernels.registry import Case, Op, register_op

DIMS = ("batch", "heads", "kv_heads", "n", "ctx", "dim")
K_OUTLIER_CHANNELS = 4
K_OUTLIER_SCALE = 8.0
MODEL_DECODE = dict(batch=1, heads=9, kv_heads=3, n=1, dim=64)  # the embedded model (SmolLM2-135M)
HEAD128_DECODE = dict(batch=1, heads=32, kv_heads=8, n=1, dim=128)  # a Llama-style head_dim 128 model


@dataclass(frozen=True)
class AttnShape:
    batch: int
    heads: int
    kv_heads: int
    n: int
    ctx: int
    dim: int

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv_heads


def attn_shape(case: Case) -> AttnShape:
    """The case's dims, validated: every dim present, heads a multiple of kv_heads, n <= ctx,
    dim valid for the format, float32 queries."""
    given = dict(case.dims)
    missing = [d for d in DIMS if d not in given]
    unknown = sorted(set(given) - set(DIMS))
    if missing or unknown:
        raise UserError(f"{case.op}: case dims must be exactly {', '.join(DIMS)}"
                        + (f"; missing {', '.join(missing)}" if missing else "")
                        + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    shape = AttnShape(**{d: int(given[d]) for d in DIMS})
    check_heads(shape.heads, shape.kv_heads)
    if shape.n > shape.ctx:
        raise UserError(f"{case.op}: n={shape.n} query tokens do not fit a context of ctx={shape.ctx}")
    if case.dtype != "float32":
        raise UserError(f"{case.op}: queries and outputs are float32 (got dtype {case.dtype}); "
                        "the cache's precision is the format")
    case.format_obj.check_dim(shape.dim)
    return shape


def check_heads(heads: int, kv_heads: int) -> None:
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        raise UserError(f"attention: query heads ({heads}) must be a positive multiple of KV heads ({kv_heads})")


def _inputs(case: Case) -> dict[str, torch.Tensor]:
    s = attn_shape(case)
    gen = case.generator()
    q = torch.randn(s.batch, s.heads, s.n, s.dim, generator=gen)
    k = torch.randn(s.ctx, s.batch, s.kv_heads, s.dim, generator=gen)
    v = torch.randn(s.ctx, s.batch, s.kv_heads, s.dim, generator=gen)
    outliers = torch.randperm(s.dim, generator=gen)[:K_OUTLIER_CHANNELS]
    k[..., outliers] *= K_OUTLIER_SCALE
    return {"q": q.to(case.device), "k": k.to(case.device), "v": v.to(case.device)}


# ---- reference ---------------------------------------------------------------------------------
def causal_limits(n: int, ctx: int) -> torch.Tensor:
    """Keys query i may see: positions 0 .. ctx-n+i, i.e. the first ctx-n+i+1."""
    return torch.arange(ctx - n + 1, ctx + 1)


def attention_float64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal GQA attention in float64: q [b, h, n, d], k/v [ctx, b, kv_heads, d] -> [b, h, n, d]."""
    b, h, n, d = q.shape
    ctx, kv_heads = k.shape[0], k.shape[2]
    check_heads(h, kv_heads)
    qg = q.double().reshape(b, kv_heads, h // kv_heads, n, d)
    kk = k.double().permute(1, 2, 0, 3)  # [b, kv, ctx, d]
    vv = v.double().permute(1, 2, 0, 3)
    scores = torch.einsum("bkgnd,bkcd->bkgnc", qg, kk) / math.sqrt(d)
    allowed = torch.arange(ctx)[None, :] < causal_limits(n, ctx)[:, None]  # [n, ctx]
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.einsum("bkgnc,bkcd->bkgnd", torch.softmax(scores, dim=-1), vv)
    return out.reshape(b, h, n, d)


@functools.lru_cache(maxsize=1)
def dequantized_inputs(case: Case) -> dict[str, torch.Tensor]:
    """q and the cache as the format gives it back (CPU, float32). Cached for the one case being
    checked (its reference and tolerance both need it); tests that swap the inputs clear it."""
    x = case.with_device("cpu").inputs()
    fmt = case.format_obj
    return {"q": x["q"], "k": fmt.roundtrip(x["k"]), "v": fmt.roundtrip(x["v"])}


def _reference(case: Case) -> torch.Tensor:
    d = dequantized_inputs(case)
    return attention_float64(d["q"], d["k"], d["v"])


def quantization_error(case: Case) -> dict[str, float]:
    """What the format costs: attention over the float cache vs over the dequantized cache (float64).
    max_abs: largest output difference; rel_rms: RMS difference / RMS of the exact output."""
    x = case.with_device("cpu").inputs()
    exact = attention_float64(x["q"], x["k"], x["v"])
    return error_stats(_reference(case), exact)


def error_stats(out: torch.Tensor, want: torch.Tensor) -> dict[str, float]:
    diff = out.double().cpu() - want.double().cpu()
    return {"max_abs": float(diff.abs().max()),
            "rel_rms": float(diff.square().mean().sqrt() / want.double().cpu().square().mean().sqrt())}


# ---- check -------------------------------------------------------------------------------------
def attention_tolerance(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rotation_steps: float = 0.0,
                        dtype: torch.dtype = torch.float32) -> float:
    """Worst-case absolute error of a `dtype` attention against the exact one, any summation order.

    A score q.k/sqrt(d) summed in dtype is off by at most (d + rotation_steps + 3) roundings of
    M = max over query and key of sum_i |q_i k_i| / sqrt(d) (rotation_steps: the query rotation of a
    rotated format); exp turns that into the same relative error on each weight, which moves the
    normalized output by at most twice as much times max|v|. The weighted sum over ctx positions
    and the normalization add ctx + 2 roundings of max|v|.
    """
    qd, kd = q.double().abs(), k.double().abs()
    b, h, n, d = q.shape
    kv_heads = k.shape[2]
    qg = qd.reshape(b, kv_heads, h // kv_heads * n, d)
    largest = torch.einsum("bkqd,cbkd->bkqc", qg, kd).max() / math.sqrt(d)
    eps = torch.finfo(dtype).eps
    vmax = float(v.abs().max())
    score_steps = d + rotation_steps + 3
    return 2 * eps * vmax * (2 * score_steps * float(largest) + k.shape[0] + 2)


def _check(case: Case, out, ref) -> None:
    s = attn_shape(case)
    out = out.cpu().double()
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert bool(torch.isfinite(out).all()), "output has NaN or Inf"
    d = dequantized_inputs(case)
    tol = attention_tolerance(d["q"], d["k"], d["v"], case.format_obj.rotation_flops(s.dim))
    err = float((out - ref).abs().max())
    assert err <= tol, f"max abs error {err:.3g} exceeds tolerance {tol:.3g}"


# ---- traffic -----------------------------------------------------------------------------------
def _bytes(case: Case) -> int:
    s = attn_shape(case)
    cache = 2 * case.format_obj.bytes_for(s.ctx * s.batch * s.kv_heads, s.dim)
    return cache + 2 * s.batch * s.heads * s.n * s.dim * 4


def _flops(case: Case) -> float:
    s = attn_shape(case)
    decode = 2 * s.ctx * s.batch * s.kv_heads * s.dim * case.format_obj.decode_flops(s.dim)
    return 4 * s.batch * s.heads * s.n * s.ctx * s.dim + decode


def cache_formats() -> list[str]:
    """The formats that can store the default cases' heads (head_dim 64 or 128): llama.cpp's k-quants,
    256-value super-blocks, cannot (`bench --format q4_k` says so for each case)."""
    head_dims = {MODEL_DECODE["dim"], HEAD128_DECODE["dim"]}
    return [name for name in formats.names() if any(formats.get(name).holds(d) for d in head_dims)]



def attn_case(op: str, fmt: str, **dims) -> Case:
    """A case with its dims in the canonical order (batch, heads, kv_heads, n, ctx, dim)."""
    return Case.make(op, fmt, **{d: dims[d] for d in DIMS})


def _decode_cases(fmt: str) -> list[Case]:
    return [attn_case("attn_decode", fmt, **MODEL_DECODE, ctx=4096),
            attn_case("attn_decode", fmt, **MODEL_DECODE, ctx=32768),
            attn_case("attn_decode", fmt, **HEAD128_DECODE, ctx=32768)]


def _prefill_cases(fmt: str) -> list[Case]:
    return [attn_case("attn_prefill", fmt, **dict(MODEL_DECODE, n=256), ctx=2048)]


for _name, _cases, _what in (("attn_decode", _decode_cases, "a few query tokens"),
                             ("attn_prefill", _prefill_cases, "a causal block of query tokens")):
    register_op(Op(
        name=_name,
        description=f"attention of {_what} over a KV cache in the format (GQA, causal)",
        make_inputs=_inputs,
        reference=_reference,
        bytes=_bytes,
        flops=_flops,
        default_cases=_cases,
        baseline=("torch", "dequant_sdpa"),
        formats=cache_formats,
        check=_check,
        in_run=_name == "attn_decode",
        dims=DIMS,
        validate=attn_shape,
        run_formats=("f32", "f16", "q8_0", "q4_0", "turbo3", "turbo2"),
        run_filter=lambda case: case.ctx <= 4096,
    ))
