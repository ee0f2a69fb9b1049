"""Statistics of a quantized model's next-token distributions against the reference model's,
the set llama-perplexity --kl-divergence prints.

Per scored token (`token_stats`): KL(P_ref || P_q), whether both put the same token on top, the
negative log-likelihood of the correct next token under each, and delta-p = p_q(correct) -
p_ref(correct). Over tokens (`summarize`): means with their standard errors (sd / sqrt(n), the
uncertainty llama.cpp prints), percentiles by linear interpolation between sorted values (position
fraction * (n - 1), llama.cpp's rule; the median is the 0.5 point), the binomial uncertainty of the
same-top rate, RMS delta-p with a delta-method uncertainty, and ln(PPL(Q)/PPL(ref)) whose
uncertainty is the standard error of the per-token NLL difference (the same number llama.cpp gets
from the two variances and their covariance). Everything is computed in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# (metric name, fraction) of the KLD distribution reported besides mean, median and max.
PERCENTILES = (("kld_p90", 0.90), ("kld_p95", 0.95), ("kld_p99", 0.99), ("kld_p999", 0.999),
               ("kld_p10", 0.10), ("kld_p5", 0.05), ("kld_p1", 0.01))


@dataclass(frozen=True)
class TokenStats:
    """Per-token values, each a float64 (same_top: bool) tensor [n]."""
    kld: torch.Tensor
    same_top: torch.Tensor
    nll: torch.Tensor
    nll_ref: torch.Tensor
    dp: torch.Tensor

    def __len__(self) -> int:
        return self.kld.numel()

    @staticmethod
    def cat(parts: list["TokenStats"]) -> "TokenStats":
        if not parts:
            raise ValueError("no token statistics to concatenate")
        return TokenStats(*(torch.cat([getattr(p, name).cpu() for p in parts])
                            for name in ("kld", "same_top", "nll", "nll_ref", "dp")))


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Normalized log-probabilities in float64 of logits [..., vocab]."""
    return torch.log_softmax(logits.double(), dim=-1)


def token_stats(ref_logp: torch.Tensor, logp: torch.Tensor, targets: torch.Tensor,
                ref_target_logp: torch.Tensor | None = None, ref_top: torch.Tensor | None = None) -> TokenStats:
    """Statistics of n tokens from log-probabilities [n, vocab] (normalized; -inf allowed where p is 0).

    `ref_target_logp` [n] and `ref_top` [n], when given, replace the reference's log-prob of the
    correct token and its top token as read from `ref_logp` (a cache may hold them exactly while
    its full distribution is rounded).
    """
    if ref_logp.dim() != 2 or ref_logp.shape != logp.shape:
        raise ValueError(f"log-probs must both be [n, vocab], got {tuple(ref_logp.shape)} and {tuple(logp.shape)}")
    if targets.shape != ref_logp.shape[:1]:
        raise ValueError(f"targets must be [{ref_logp.shape[0]}], got {tuple(targets.shape)}")
    ref, q = ref_logp.double(), logp.double()
    p = ref.exp()
    kld = torch.where(p > 0, p * (ref - q), torch.zeros_like(p)).sum(-1)
    targets = targets.to(device=q.device, dtype=torch.long)[:, None]
    ref_lp = ref.gather(-1, targets)[:, 0] if ref_target_logp is None else ref_target_logp.to(q.device).double()
    top_ref = ref.argmax(-1) if ref_top is None else ref_top.to(device=q.device, dtype=torch.long)
    lp = q.gather(-1, targets)[:, 0]
    return TokenStats(kld=kld, same_top=q.argmax(-1) == top_ref, nll=-lp, nll_ref=-ref_lp,
                      dp=lp.exp() - ref_lp.exp())


def mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error, sd / sqrt(n) with the n - 1 sample sd."""
    x = values.double()
    n = x.numel()
    if n < 2:
        raise ValueError(f"need at least 2 values for a mean with an uncertainty, got {n}")
    return float(x.mean()), float(x.std(unbiased=True) / math.sqrt(n))


def percentile(sorted_values: torch.Tensor, fraction: float) -> float:
    """Linear interpolation at position fraction * (n - 1) of ascending values."""
    n = sorted_values.numel()
    pos = min(max(fraction, 0.0), 1.0) * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    w = pos - lo
    return float((1 - w) * sorted_values[lo] + w * sorted_values[hi])


def summarize(stats: TokenStats) -> dict[str, float]:
    """The llama-perplexity --kl-divergence statistics of per-token values (keys are metric names)."""
    n = len(stats)
    if n < 2:
        raise ValueError(f"need at least 2 scored tokens, got {n}")
    out: dict[str, float] = {"n_tokens": n}
    kld = stats.kld.double()
    out["kld_mean"], out["kld_mean_err"] = mean_and_error(kld)
    ordered = kld.sort().values
    out["kld_median"] = percentile(ordered, 0.5)
    for name, fraction in PERCENTILES:
        out[name] = percentile(ordered, fraction)
    out["kld_max"], out["kld_min"] = float(ordered[-1]), float(ordered[0])

    top = float(stats.same_top.double().mean())
    out["same_top_pct"] = 100.0 * top
    out["same_top_pct_err"] = 100.0 * math.sqrt(top * (1.0 - top) / (n - 1))

    msq, msq_err = mean_and_error(stats.dp.double() ** 2)
    out["rms_dp"] = math.sqrt(msq)
    out["rms_dp_err"] = 0.5 * msq_err / out["rms_dp"] if out["rms_dp"] > 0 else 0.0
    out["mean_dp"], out["mean_dp_err"] = mean_and_error(stats.dp)

    nll, nll_err = mean_and_error(stats.nll)
    nll_ref, nll_ref_err = mean_and_error(stats.nll_ref)
    out["ppl"], out["ppl_err"] = math.exp(nll), math.exp(nll) * nll_err
    out["ppl_ref"], out["ppl_ref_err"] = math.exp(nll_ref), math.exp(nll_ref) * nll_ref_err
    out["ln_ppl_ratio"], out["ln_ppl_ratio_err"] = mean_and_error(stats.nll.double() - stats.nll_ref.double())
    return out
