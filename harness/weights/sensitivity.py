"""Role sensitivity: KL divergence per bit spent, one tensor role at a time (the landscape seed's
role ROI table).

Without `protect`: only role r is quantized in `fmt` (everything else unquantized). Keeping r
unquantized would spend (16 - bits(fmt)) bits on each of its weights, fp16 being the unquantized
reference storage; spread over all studied weights that is delta_bpw, and kld_per_bit = KLD / delta_bpw.
With `protect`: everything studied is in `fmt` (the baseline) except role r, kept in `protect`;
recovery = KLD(baseline) - KLD(r protected), delta_bpw = (bits(protect) - bits(fmt)) * n_r / N,
kld_per_bit = recovery / delta_bpw. Either way rank 1 is the role where a bit buys the most KLD.
"""
from __future__ import annotations

import math

from ..errors import UserError
from ..quality import quality_table
from .quantized_model import QuantizedWeights, quantize_weights
from .roles import LAYER_ROLES, ROLES, WeightSpec

UNQUANTIZED_BITS = 16.0

COLUMNS = ["rank", "role", "weights", "params", "share %", "weights_bpw", "delta_bpw", "kld_mean", "kld_mean_err",
           "recovery", "kld_per_bit", "same_top_pct"]


def sensitivity_table(model, fmt: str, protect: str | None = None, roles=LAYER_ROLES, *, method: str = "rtn",
                      gptq=None, calibration=None, corpus=None, ctx: int = 512, chunks: int = 2, kv: str = "f16",
                      attn: str = "dequant_sdpa", progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(ranked rows, the quality_table rows behind them)."""
    roles = list(dict.fromkeys(roles))
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise UserError(f"sensitivity: unknown role(s) {', '.join(unknown) or '(none)'}; roles: {', '.join(ROLES)}")
    if model.config.tie_embeddings and {"embeddings", "output"} <= set(roles):
        raise UserError("sensitivity: embeddings and output are one tied tensor in this model; study one of them")
    study = ",".join(f"{r}={fmt}" for r in roles)
    hessians: dict = {}
    common = dict(method=method, gptq=gptq, calibration=calibration, hessians=hessians, progress=progress)
    low = quantize_weights(model, study, **common)
    high = quantize_weights(model, ",".join(f"{r}={protect}" for r in roles), **common) if protect else None
    total = sum(sl.numel for sl in low.tensors)

    def measure(spec_text: str, tensors) -> dict:
        weights = QuantizedWeights(WeightSpec(spec_text), low.method, tensors, low.calibration)
        return quality_table(model, [kv], corpus, ctx, chunks, attn=attn, progress=progress, weights=weights)[0]

    baseline = measure(study, low.tensors) if protect else None
    rows, quality_rows = [], ([baseline] if baseline else [])
    for role in roles:
        mine = [sl for sl in low.tensors if sl.role == role or (role == "output" and sl.role == "embeddings")]
        n = sum(sl.numel for sl in mine)
        bits_low = sum(low.tensors[sl].fmt.bits_per_value_for(sl.in_dim) * sl.numel for sl in mine) / n
        if protect:
            tensors = {sl: (high.tensors[sl] if sl in mine else qt) for sl, qt in low.tensors.items()}
            result = measure(f"{study},{role}={protect}", tensors)
            bits_high = sum(high.tensors[sl].fmt.bits_per_value_for(sl.in_dim) * sl.numel for sl in mine) / n
            gain = baseline["kld_mean"] - result["kld_mean"]
        else:
            result = measure(f"{role}={fmt}", {sl: low.tensors[sl] for sl in mine})
            bits_high, gain = UNQUANTIZED_BITS, result["kld_mean"]
        delta = (bits_high - bits_low) * n / total
        quality_rows.append(result)
        rows.append({"role": role, "weights": result["weights"], "params": n, "share %": round(100 * n / total, 2),
                     "weights_bpw": result["weights_bpw"], "delta_bpw": delta, "kld_mean": result["kld_mean"],
                     "kld_mean_err": result["kld_mean_err"], "recovery": gain if protect else None,
                     "kld_per_bit": gain / delta if delta > 0 else float("nan"),
                     "same_top_pct": result["same_top_pct"]})
    rows.sort(key=lambda r: (math.isnan(r["kld_per_bit"]), -r["kld_per_bit"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows, quality_rows
