"""The --weights / --method / --gptq-* options shared by quality, sensitivity and throughput."""
from __future__ import annotations

import sys

from quantbench.harness.errors import UserError
from quantbench.harness.weights import (
    EMBEDDED_NOTE,
    MATMULS,
    METHODS,
    GPTQOptions,
    calibration_tokens,
    quantize_weights,
)
from quantbench.harness.weights.calibration import DEFAULT_LENGTH, DEFAULT_SEQUENCES

WEIGHT_COLUMNS = ["weights", "method", "weights_bpw"]


def add_weight_options(p, format_only: bool = False) -> None:
    if format_only:
        p.add_argument("--weights", metavar="FMT", required=True,
                       help="the weight format studied, with its options: q4_0, turbo3:group=64")
    else:
        p.add_argument("--weights", metavar="SPEC", default=None,
                       help="quantize the weights: 'default=q4_0,k=q8_0,down@0-3=q8_0' (roles q k v o gate up down "
                            "embeddings output, groups default attn ffn, layer ranges @A-B+C, formats with options "
                            "such as turbo3:group=64, 'none' keeps a role unquantized; later items win); ';' "
                            "separates several specs. default covers the per-layer roles, not embeddings/output")
    p.add_argument("--method", default="rtn",
                   help=f"weight quantization method(s), comma-separated: {', '.join(METHODS)} (default rtn)")
    p.add_argument("--gptq-sequences", type=int, default=DEFAULT_SEQUENCES,
                   help=f"gptq calibration sequences, taken from the end of the corpus (default {DEFAULT_SEQUENCES})")
    p.add_argument("--gptq-length", type=int, default=DEFAULT_LENGTH,
                   help=f"gptq calibration tokens per sequence (default {DEFAULT_LENGTH})")
    p.add_argument("--gptq-damp", type=float, default=GPTQOptions.damp,
                   help=f"gptq dampening, a fraction of mean(diag H) (default {GPTQOptions.damp})")
    p.add_argument("--gptq-block", type=int, default=GPTQOptions.block_size,
                   help=f"gptq lazy-update block in columns (default {GPTQOptions.block_size})")
    p.add_argument("--gptq-act-order", action="store_true", help="gptq: quantize columns by decreasing H_ii")
    p.add_argument("--gptq-alpha", type=float, default=0.0,
                   help="gptq: per-input-channel scaling s_i = H_ii^alpha (0 = off; the landscape seed tried 0.1-0.5)")


def methods(args) -> list[str]:
    chosen = [m.strip() for m in args.method.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METHODS]
    if not chosen or bad:
        raise UserError(f"--method {args.method!r}: choose from {', '.join(METHODS)}")
    return chosen


def gptq_options(args) -> GPTQOptions:
    return GPTQOptions(damp=args.gptq_damp, block_size=args.gptq_block, act_order=args.gptq_act_order,
                       alpha=args.gptq_alpha)


def weight_specs(args) -> list[str]:
    specs = [s.strip() for s in (args.weights or "").split(";") if s.strip()]
    if args.weights is not None and not specs:
        raise UserError("--weights: no spec given")
    return specs


def build_weights(model, args, corpus=None, reserved_tokens: int = 0, *, folded=None, hessians=None) -> list:
    """One QuantizedWeights per (--weights spec, --method); [] without --weights. `folded`: quantize
    the weights of that folded model (harness/activations); `hessians`: gptq's, shared across calls."""
    specs = weight_specs(args)
    if not specs:
        return []
    chosen = methods(args)
    if args.model is None and getattr(args, "config", None) is None and folded is None:
        print(EMBEDDED_NOTE, file=sys.stderr)
    calibration, hessians = None, {} if hessians is None else hessians
    if "gptq" in chosen:
        calibration = calibration_tokens(model, corpus, args.gptq_sequences, args.gptq_length, reserved_tokens)
    return [quantize_weights(model, spec, method, gptq=gptq_options(args), calibration=calibration,
                             hessians=hessians, folded=folded) for spec in specs for method in chosen]


def weights_title(weights: list, args) -> str:
    if not weights:
        return ""
    parts = []
    for w in weights:
        s = w.summary()
        embeddings = "embeddings/output included" if s["embeddings_included"] else "embeddings/output not quantized"
        parts.append(f"{w.label} {w.variant}: {s['bits_per_weight']:.4g} bits/weight over {s['quantized_weights']:,} "
                     f"quantized weights ({embeddings}){''.join('; ' + n for n in w.notes)}")
    note = f"\n{EMBEDDED_NOTE}" if args.model is None and getattr(args, "config", None) is None else ""
    return "\n" + "\n".join(parts) + note


def add_throughput_weight_options(p) -> None:
    p.add_argument("--weights", metavar="SPEC", default=None,
                   help="quantize the weights (rtn; speed does not depend on the method) with this spec, e.g. "
                        "'default=q4_0,k=q8_0' (see quantbench quality --help)")
    p.add_argument("--matmul", default="dequant_matmul",
                   help=f"with --weights: how quantized weights are multiplied, comma-separated: {', '.join(MATMULS)} "
                        "(dense = dequantized once, the unquantized speed; default dequant_matmul)")


def with_weight_variants(model, args, measure) -> list:
    """measure() once per --matmul variant with the --weights installed (rows labelled), or once without."""
    if not args.weights:
        return measure()
    matmuls = [m.strip() for m in args.matmul.split(",") if m.strip()]
    bad = [m for m in matmuls if m not in MATMULS]
    if not matmuls or bad:
        raise UserError(f"--matmul {args.matmul!r}: choose from {', '.join(MATMULS)}")
    weights = quantize_weights(model, args.weights, "rtn")
    rows = []
    for matmul in matmuls:
        with weights.installed(model, matmul):
            part = measure()
        for row in part:
            row.weights, row.matmul = weights.spec.text, matmul
        rows += part
    return rows
