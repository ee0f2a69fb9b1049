"""KL divergence of a model with quantized KV caches against the same model with an unquantized one.

    rows = quality_table(model, ["f16", "q8_0", "turbo3"], ctx=512, chunks=8)
    results.append(quality_records(rows))

For each chunk (corpus.py) the reference logits (KV cache in the model's own dtype) come from the
on-disk cache (reference_cache.py) or are computed and stored; then each KV policy's logits are
computed through the attention backend `attn`, and per-token statistics (kld_stats.py) are kept.
"""
from __future__ import annotations

import contextlib
import sys
import time

import torch

from quantbench.harness import results as results_store
from quantbench.harness.errors import UserError
from quantbench.harness.model.kv_policy import KVPolicy, parse_kv_policy

from .corpus import Corpus, chunk_corpus, default_corpus, load_corpus
from .kld_stats import TokenStats, log_probs, summarize, token_stats
from .reference_cache import ReferenceCache

SEED = 0
MAX_SAMPLES = 4096  # per-token KLD values kept in the kld_mean record (a seeded subsample beyond this)
REFERENCE_ATTN = "dequant_sdpa"

# metric -> (unit, direction); the record names are stable
METRICS = {
    "kld_mean": ("nats", "lower"), "kld_mean_err": ("nats", "lower"), "kld_median": ("nats", "lower"),
    "kld_p90": ("nats", "lower"), "kld_p95": ("nats", "lower"), "kld_p99": ("nats", "lower"),
    "kld_p999": ("nats", "lower"), "kld_max": ("nats", "lower"), "same_top_pct": ("%", "higher"),
    "rms_dp": ("probability", "lower"), "ppl": ("ppl", "lower"), "ppl_ref": ("ppl", "lower"),
    "ln_ppl_ratio": ("nats", "lower"), "bits_per_value": ("bits", "lower"),
    "kv_bytes_per_token": ("bytes", "lower"),
}
COLUMNS = ["kv", "bits_per_value", "kv_bytes_per_token", "kld_mean", "kld_mean_err", "kld_median", "kld_p90",
           "kld_p95", "kld_p99", "kld_p999", "kld_max", "kld_min", "kld_p10", "kld_p5", "kld_p1", "same_top_pct",
           "same_top_pct_err", "rms_dp", "rms_dp_err", "mean_dp", "mean_dp_err", "ppl", "ppl_err", "ppl_ref",
           "ppl_ref_err", "ln_ppl_ratio", "ln_ppl_ratio_err", "n_tokens"]
TABLE_COLUMNS = ["kv", "bits_per_value", "kv_bytes_per_token", "kld_mean", "kld_mean_err", "kld_median",
                 "kld_p99", "kld_max", "same_top_pct", "rms_dp", "ppl", "ln_ppl_ratio", "ln_ppl_ratio_err"]


def as_policy(model, spec: str | KVPolicy) -> KVPolicy:
    if isinstance(spec, KVPolicy):
        return spec
    return parse_kv_policy(spec, n_layers=model.config.n_layers)


def quality_table(model, kv_specs: list[str | KVPolicy], corpus: Corpus | str | None = None, ctx: int = 512,
                  chunks: int = 8, *, attn: str = "dequant_sdpa", model_name: str | None = None, cache_root=None,
                  progress: bool = True, weights=None, start: int = 0, keep_tokens: bool = False,
                  activations=None) -> list[dict]:
    """One row per KV policy: the kld_stats summary, bits per value, KV bytes per token, the record
    case ("ctx512,chunks8,corpus=pydoc_topics", plus ",model=<model_name>" when a name is given for a
    model other than the default), and `kld_samples` (per-token KLD values, at most MAX_SAMPLES).

    `corpus`: a Corpus, a text file path, or None for the default corpus. Progress goes to stderr.
    `weights`: quantized weights (harness/weights QuantizedWeights) for every row, or a list of them
    (None: unquantized) giving one row per (weights, KV policy); the reference keeps the model's
    own weights and an unquantized KV cache.
    `activations`: a list of harness/activations ActivationQuantization (each over its own quantized
    weights or none), one more row per (activations, KV policy) after the weights' rows.
    `start`: score chunks start, start + 1, ... of the corpus instead of the first ones (the case then
    names it: ",start=N"). `keep_tokens`: each row also holds `token_blocks`, one TokenStats per chunk
    (on the CPU), for statistics paired on the same tokens across rows (harness/experiments).
    """
    weight_sets = weights if isinstance(weights, (list, tuple)) else [weights]
    policies = list({p.spec: p for p in (as_policy(model, spec) for spec in kv_specs)}.values())
    if not policies:
        raise UserError("no KV policy to measure")
    if ctx > model.config.max_seq_len:
        raise UserError(f"context {ctx} is longer than the model's ({model.config.max_seq_len})")
    if not isinstance(corpus, Corpus):
        corpus = default_corpus() if corpus is None else load_corpus(corpus)
    chunked = chunk_corpus(model, corpus, ctx, chunks, start)
    if chunked.count < chunks:
        _say(progress, f"quality: corpus {corpus.name} holds {chunked.available} chunks of {ctx} tokens; "
                       f"using {chunked.count} from chunk {start}, not {chunks}")
    cache = ReferenceCache.for_run(model, corpus.sha256, ctx, chunked.first, chunked.bos, cache_root)
    _say(progress, f"quality: reference log-probs cached in {cache.folder}")
    torch.manual_seed(SEED)
    keys = [(w, p) for w in [*weight_sets, *(activations or ())] for p in policies]
    parts: dict[tuple, list[TokenStats]] = {(_weights_label(w), p.spec): [] for w, p in keys}
    started = time.perf_counter()
    underflow: dict[str, int] = {}
    for i in range(chunked.count):
        tokens = chunked.tokens[i:i + 1].to(model.device)
        targets = chunked.targets(i)
        ref, computed = cache.get(start + i, chunked.tokens[i], targets, chunked.first,
                                  lambda: _checked_logits(model, tokens, None, REFERENCE_ATTN, "reference", i))
        _say(progress, f"quality reference: chunk {i + 1}/{chunked.count} ({'computed' if computed else 'from cache'})")
        device = tokens.device
        ref_logp = ref.log_probs(device)
        ref_target, ref_top = ref.target_tensor(device), ref.top_tensor(device)
        for w, policy in keys:
            label = _row_label(w, policy)
            _say(progress, f"quality {label}: chunk {i + 1}/{chunked.count}")
            with (w.installed(model) if w is not None else contextlib.nullcontext()):
                logits = _checked_logits(model, tokens, policy, attn, label, i, underflow)
            logp = log_probs(logits[chunked.first:-1])
            parts[(_weights_label(w), policy.spec)].append(token_stats(ref_logp, logp, targets, ref_target, ref_top))
    _say(progress, f"quality: {len(keys)} rows x {chunked.count} chunks in {time.perf_counter() - started:.1f} s")
    warn_scale_underflow(underflow)
    case = _case(corpus, ctx, chunked.count, model_name, start)
    rows = []
    for w, policy in keys:
        blocks = parts[(_weights_label(w), policy.spec)]
        stats = TokenStats.cat(blocks)
        row = {"kv": policy.spec, "case": case, "variant": attn,
               "bits_per_value": policy.bits_per_value(model.config.head_dim, ctx, model.config.n_kv_heads),
               "kv_bytes_per_token": policy.kv_bytes_per_token(model.config, ctx)}
        if hasattr(w, "row_fields"):
            row.update(w.row_fields(policy.spec, attn))
        elif w is not None:
            summary = w.summary()
            row.update({"weights": w.spec.text, "method": w.variant, "weights_bpw": summary["bits_per_weight"],
                        "embeddings_included": summary["embeddings_included"],
                        "format": f"{w.label}|kv:{policy.spec}", "variant": f"{w.variant}+{attn}"})
        if keep_tokens:
            row["token_blocks"] = [TokenStats.cat([b]) for b in blocks]
        rows.append({**row, **summarize(stats), "kld_samples": kld_samples(stats.kld)})
    return rows


def kld_samples(kld: torch.Tensor, limit: int = MAX_SAMPLES) -> list[float]:
    """All per-token KLD values in token order, or a seeded subsample of `limit` of them (still in order)."""
    if kld.numel() <= limit:
        return kld.tolist()
    keep = torch.randperm(kld.numel(), generator=torch.Generator().manual_seed(SEED))[:limit].sort().values
    return kld[keep].tolist()


def quality_records(rows: list[dict], device: str = "cpu") -> list[dict]:
    """Records of quality_table rows: op "quality", backend "torch", variant = attention backend.
    Rows with quantized weights: format "w:<weights spec>|kv:<kv policy>", variant "<method>+<attention>"
    (method: rtn, or gptq:<options>:calib=<corpus>:<n>x<len>), plus a weights_bpw record (bits per weight).
    Rows with quantized activations: format "a:<spec>|kv:<policy>" or "w:<spec>|a:<spec>|kv:<policy>",
    plus an act_bits record (bits per activation value)."""
    records = []
    for row in rows:
        metrics = dict(METRICS)
        if "weights" in row:
            metrics["weights_bpw"] = ("bits", "lower")
        if "act" in row:
            metrics["act_bits"] = ("bits", "lower")
        for metric, (unit, direction) in metrics.items():
            records.append(results_store.make_record(
                op="quality", format=row.get("format", row["kv"]), backend="torch", variant=row["variant"],
                case=row["case"], metric=metric, value=row[metric], unit=unit,
                direction=direction, samples=row["kld_samples"] if metric == "kld_mean" else (), device=device))
    return records


def _checked_logits(model, tokens: torch.Tensor, policy: KVPolicy | None, attn: str, label: str,
                    index: int, underflow: dict | None = None) -> torch.Tensor:
    cache = model.new_cache(tokens.shape[0], tokens.shape[1], policy, attn)
    logits = model.forward(tokens, cache, 0)[0]
    if not torch.isfinite(logits).all():
        raise UserError(f"KV policy {label}: the model gave non-finite logits in chunk {index + 1}")
    if underflow is not None:
        underflow[label] = underflow.get(label, 0) + cache.scale_underflow(tokens.shape[1])
    return logits


def warn_scale_underflow(underflow: dict[str, int]) -> None:
    for label, blocks in underflow.items():
        if blocks:
            print(f"warning: KV policy {label}: {blocks} cache blocks had an fp16 scale that underflowed "
                  "(their values decode to zero or to the block minimum; llama.cpp stores the same bytes)",
                  file=sys.stderr)


def _weights_label(weights) -> str:
    return "none" if weights is None else f"{weights.label}:{weights.variant}"


def _row_label(weights, policy: KVPolicy) -> str:
    return policy.spec if weights is None else f"{weights.label} ({weights.variant}), kv {policy.spec}"


def _case(corpus: Corpus, ctx: int, count: int, model_name: str | None, start: int = 0) -> str:
    case = f"ctx{ctx},chunks{count},corpus={corpus.name}" + (f",start={start}" if start else "")
    return f"{case},model={model_name}" if model_name else case


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
