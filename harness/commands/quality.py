"""`quantbench quality`: KL divergence of a model with quantized KV caches against the unquantized model."""
from __future__ import annotations

from pathlib import Path

from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model, parse_kv_policy
from quantbench.harness.model.attention import attention_names
from quantbench.harness.model.kv_policy import split_policies
from quantbench.harness.quality import COLUMNS, TABLE_COLUMNS, quality_records, quality_table
from quantbench.harness.quality.corpus import load_corpus

from .act_options import ACT_COLUMNS, acts_title, add_act_options, build_activations
from .common import add_output_option, add_store_options, emit, positive_int, resolve_device, store
from .weight_options import WEIGHT_COLUMNS, add_weight_options, build_weights, weights_title

DEFAULT_KV = "f16,q8_0,q4_0,turbo4,turbo3,turbo2"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quality", help="KL divergence, same-top %%, RMS delta-p and PPL ratio per KV cache policy (and weights "
                        "spec) against the unquantized model (llama-perplexity --kl-divergence statistics)",
        description="Scores the second half of each ctx-token chunk of the corpus, as llama-perplexity does. The "
                    "unquantized model's log-probabilities are computed once and cached (uint16 per vocabulary "
                    "entry, about 98 KB per scored token for a 49152 vocabulary) in $QUANTBENCH_CACHE, else "
                    "<results dir>/cache; delete that folder to reclaim the space.")
    p.add_argument("--kv", default=None,
                   help=f"KV policies, comma-separated (default {DEFAULT_KV}). A layer-adaptive policy's items "
                        "(firstN=, lastN=, layersA-B=, k.firstN=...) attach to the policy before them, as does "
                        "v= after k=: 'f16,turbo3,first4=q8_0,k=q8_0,v=turbo3' is three policies; ';' separates "
                        "policies explicitly: 'turbo3,last8=q8_0;turbo2,first4=q8_0'")
    p.add_argument("--k", metavar="FMT", default=None,
                   help="K format of one asymmetric policy (with --v); it is added to the --kv "
                        "policies, or measured alone when --kv is not given")
    p.add_argument("--v", metavar="FMT", default=None, help="V format of the asymmetric policy (with --k)")
    p.add_argument("-m", "--model", default=None,
                   help="GGUF file or Hugging Face folder (default: embedded SmolLM2-135M)")
    p.add_argument("--corpus", metavar="FILE", default=None,
                   help="UTF-8 text to score (default: CPython's pydoc_data.topics)")
    p.add_argument("-c", "--ctx", type=positive_int, default=512,
                   help="tokens per chunk; the second half of each chunk is scored (default 512)")
    p.add_argument("--chunks", type=positive_int, default=8,
                   help="score the first N chunks (default 8: about 2,000 scored tokens, a few minutes on 2 CPU cores)")
    p.add_argument("--attn", default="dequant_sdpa", help=f"attention backend ({', '.join(attention_names())})")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_weight_options(p)
    add_act_options(p)
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def policy_specs(args, n_layers: int) -> list:
    kv = DEFAULT_KV if args.kv is None and args.k is None else args.kv
    policies = [parse_kv_policy(spec, n_layers=n_layers) for spec in (split_policies(kv) if kv else [])]
    if args.k is not None:
        policies.append(parse_kv_policy(k=args.k, v=args.v, n_layers=n_layers))
    if not policies:
        raise UserError("--kv: no policy given")
    return policies


def run(args) -> int:
    if (args.k is None) != (args.v is None):
        raise UserError("--k and --v go together: give both for an asymmetric policy")
    device = resolve_device(args.device)
    corpus = load_corpus(args.corpus)
    model = load_model(args.model, device=device)
    if (args.weights or args.act) and args.kv is None and args.k is None:
        args.kv = "f16"  # a weights or activations study: one KV policy unless asked for more
    policies = policy_specs(args, model.config.n_layers)
    hessians = {}
    weights = build_weights(model, args, corpus, reserved_tokens=args.ctx * args.chunks, hessians=hessians)
    acts = build_activations(model, args, weights, corpus, args.ctx * args.chunks, hessians)
    rows = quality_table(model, policies, corpus, args.ctx, args.chunks, attn=args.attn,
                         model_name=Path(args.model).name if args.model else None,
                         weights=([None, *weights] if acts else weights) or None, activations=acts or None)
    first = rows[0]
    c = model.config
    columns = ((WEIGHT_COLUMNS if weights else []) + (ACT_COLUMNS if acts else [])
               + (TABLE_COLUMNS if args.output in ("table", "md") else COLUMNS))
    what = "the unquantized KV cache"
    if weights:
        what = "the unquantized weights and KV cache"
    if acts:
        what = "the unquantized model (weights, activations) and KV cache"
    emit(rows, columns, args,
         f"KL divergence vs {what}: {c.name or c.arch} on {device}, {first['case']}, "
         f"{first['n_tokens']} scored tokens; attention {args.attn}; kld in nats, *_err = standard error, "
         "rms_dp in probability, same_top in %" + weights_title(weights, args) + acts_title(acts))
    store(quality_records(rows, device), args)
    return 0
