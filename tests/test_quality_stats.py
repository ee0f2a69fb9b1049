"""kld_stats against a direct float64 computation and known cases."""
import math

import numpy as np
import pytest
import torch

from quantbench.harness.quality.kld_stats import (
    TokenStats,
    log_probs,
    mean_and_error,
    percentile,
    summarize,
    token_stats,
)


def _random_pair(n=300, vocab=50, noise=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ref = 3 * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
    quant = ref + noise * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    return log_probs(ref), log_probs(quant), targets


def test_identical_distributions_give_zero_kld_and_full_agreement():
    ref, _, targets = _random_pair()
    s = summarize(token_stats(ref, ref.clone(), targets))
    assert s["kld_mean"] == 0 and s["kld_max"] == 0 and s["kld_mean_err"] == 0
    assert s["same_top_pct"] == 100 and s["same_top_pct_err"] == 0
    assert s["rms_dp"] == 0 and s["ln_ppl_ratio"] == 0 and s["ppl"] == s["ppl_ref"]


def test_known_kld_of_shifted_distribution():
    # P uniform over 4 tokens, Q = (1/2, 1/6, 1/6, 1/6): KL(P||Q) = sum_i 1/4 ln((1/4) / q_i)
    p = torch.full((2, 4), 0.25, dtype=torch.float64).log()
    q = torch.tensor([[0.5, 1 / 6, 1 / 6, 1 / 6]] * 2, dtype=torch.float64).log()
    expected = sum(0.25 * math.log(0.25 / qi) for qi in (0.5, 1 / 6, 1 / 6, 1 / 6))
    stats = token_stats(p, q, torch.tensor([0, 1]))
    assert torch.allclose(stats.kld, torch.full((2,), expected, dtype=torch.float64), rtol=1e-14, atol=0)
    # correct token 0: q gives 1/2 where p gives 1/4; token 1: 1/6 vs 1/4
    assert torch.allclose(stats.dp, torch.tensor([0.25, 1 / 6 - 0.25], dtype=torch.float64))
    # a logit shift of one token by t: KL(P||Q) = -t p_j + log(1 - p_j + p_j e^t)
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]], dtype=torch.float64)
    t = 0.7
    shifted = logits.clone()
    shifted[0, 1] += t
    pj = torch.softmax(logits, -1)[0, 1].item()
    kld = token_stats(log_probs(logits), log_probs(shifted), torch.tensor([1])).kld.item()
    assert kld == pytest.approx(-t * pj + math.log(1 - pj + pj * math.exp(t)), rel=1e-12)


def test_zero_probability_reference_tokens_contribute_nothing():
    ref = torch.tensor([[0.0, -math.inf, -math.inf]], dtype=torch.float64)  # all mass on token 0
    q = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64).log()
    kld = token_stats(ref, q, torch.tensor([0])).kld
    assert kld.item() == pytest.approx(math.log(2), rel=1e-14)


def test_summary_matches_direct_float64_computation():
    ref, quant, targets = _random_pair()
    s = summarize(token_stats(ref, quant, targets))
    p, q = ref.exp().numpy(), quant.exp().numpy()
    t = targets.numpy()
    n = len(t)
    kld = np.array([sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(p.shape[1])) for i in range(n)])
    assert s["n_tokens"] == n
    assert s["kld_mean"] == pytest.approx(kld.mean(), rel=1e-10)
    assert s["kld_mean_err"] == pytest.approx(kld.std(ddof=1) / math.sqrt(n), rel=1e-9)
    for name, fraction in (("kld_median", 0.5), ("kld_p90", 0.9), ("kld_p95", 0.95), ("kld_p99", 0.99),
                           ("kld_p999", 0.999), ("kld_p10", 0.1), ("kld_p5", 0.05), ("kld_p1", 0.01)):
        assert s[name] == pytest.approx(np.quantile(kld, fraction), rel=1e-10), name
    assert s["kld_max"] == pytest.approx(kld.max(), rel=1e-10) and s["kld_min"] == pytest.approx(kld.min(), rel=1e-10)

    same = (p.argmax(1) == q.argmax(1)).mean()
    assert 0 < same < 1
    assert s["same_top_pct"] == pytest.approx(100 * same, rel=1e-12)
    assert s["same_top_pct_err"] == pytest.approx(100 * math.sqrt(same * (1 - same) / (n - 1)), rel=1e-12)

    dp = q[np.arange(n), t] - p[np.arange(n), t]
    rms = math.sqrt((dp ** 2).mean())
    assert s["rms_dp"] == pytest.approx(rms, rel=1e-10)
    assert s["rms_dp_err"] == pytest.approx(0.5 / rms * (dp ** 2).std(ddof=1) / math.sqrt(n), rel=1e-9)

    nll, nll_ref = -np.log(q[np.arange(n), t]), -np.log(p[np.arange(n), t])
    assert s["ppl"] == pytest.approx(math.exp(nll.mean()), rel=1e-12)
    assert s["ppl_ref"] == pytest.approx(math.exp(nll_ref.mean()), rel=1e-12)
    assert s["ln_ppl_ratio"] == pytest.approx(nll.mean() - nll_ref.mean(), rel=1e-10)
    # llama.cpp's form: sqrt(se(nll)^2 + se(nll_ref)^2 - 2 cov / n)
    se, se_ref = nll.std(ddof=1) / math.sqrt(n), nll_ref.std(ddof=1) / math.sqrt(n)
    cov = np.cov(nll, nll_ref, ddof=1)[0, 1] / n
    assert s["ln_ppl_ratio_err"] == pytest.approx(math.sqrt(se ** 2 + se_ref ** 2 - 2 * cov), rel=1e-9)


def test_exact_reference_target_and_top_override_the_distribution():
    ref, quant, targets = _random_pair(n=20)
    exact_lp = ref.gather(-1, targets[:, None])[:, 0]
    plain = token_stats(ref, quant, targets)
    given = token_stats(ref, quant, targets, exact_lp, ref.argmax(-1))
    assert torch.equal(plain.nll_ref, given.nll_ref) and torch.equal(plain.same_top, given.same_top)
    other = token_stats(ref, quant, targets, exact_lp - 1.0, quant.argmax(-1))
    assert torch.allclose(other.nll_ref, plain.nll_ref + 1.0) and bool(other.same_top.all())


def test_concatenation_equals_one_pass():
    ref, quant, targets = _random_pair(n=40)
    whole = summarize(token_stats(ref, quant, targets))
    parts = TokenStats.cat([token_stats(ref[:15], quant[:15], targets[:15]),
                            token_stats(ref[15:], quant[15:], targets[15:])])
    assert summarize(parts) == pytest.approx(whole, rel=1e-12)


def test_percentile_interpolates_like_llama_perplexity():
    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert percentile(values, 0.9) == pytest.approx(3.6)
    assert percentile(values, 0.5) == 2.0 and percentile(values, 0) == 0 and percentile(values, 1) == 4
    assert percentile(torch.tensor([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.5


def test_bad_input_is_rejected():
    ref, quant, targets = _random_pair(n=4)
    with pytest.raises(ValueError, match="both be"):
        token_stats(ref, quant[:, :10], targets)
    with pytest.raises(ValueError, match="targets"):
        token_stats(ref, quant, targets[:2])
    with pytest.raises(ValueError, match="at least 2"):
        summarize(token_stats(ref[:1], quant[:1], targets[:1]))
    with pytest.raises(ValueError, match="at least 2"):
        mean_and_error(torch.tensor([1.0]))
