"""`quantbench sensitivity`: rank tensor roles by KL divergence per bit spent (quantize one role at a
time, or protect one role at a time at a higher format)."""
from __future__ import annotations

import math
import sys

from quantbench.harness import results as results_store
from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model
from quantbench.harness.quality import quality_records
from quantbench.harness.quality.corpus import load_corpus
from quantbench.harness.weights import EMBEDDED_NOTE, LAYER_ROLES, calibration_tokens
from quantbench.harness.weights.sensitivity import COLUMNS, sensitivity_table

from .common import add_output_option, add_store_options, emit, positive_int, resolve_device, store
from .weight_options import add_weight_options, gptq_options, methods


def add_parser(sub) -> None:
    p = sub.add_parser("sensitivity", help="rank weight roles (q k v o gate up down ...) by KL divergence per bit",
                       description="Without --protect, each role alone is quantized in the --weights format; with "
                                   "--protect FMT, everything is in --weights except one role at a time in FMT. "
                                   "Rank 1 is where a bit per weight buys the most KL divergence.")
    add_weight_options(p, format_only=True)
    p.add_argument("--protect", metavar="FMT", default=None,
                   help="protect one role at a time in this format (e.g. q8_0)")
    p.add_argument("--roles", default=",".join(LAYER_ROLES),
                   help=f"roles to study, comma-separated (default {','.join(LAYER_ROLES)}; also embeddings, output)")
    p.add_argument("-m", "--model", default=None,
                   help="GGUF file or Hugging Face folder (default: embedded SmolLM2-135M)")
    p.add_argument("--corpus", metavar="FILE", default=None,
                   help="UTF-8 text to score (default: CPython's pydoc topics)")
    p.add_argument("-c", "--ctx", type=positive_int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=positive_int, default=2,
                   help="chunks scored per role (default 2: a few minutes on 2 cores)")
    p.add_argument("--kv", default="f16", help="KV cache policy of every run (default f16)")
    p.add_argument("--attn", default="dequant_sdpa", help="attention backend (default dequant_sdpa)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    chosen = methods(args)
    if len(chosen) != 1:
        raise UserError("sensitivity: give one --method")
    if ";" in args.weights or "=" in args.weights.split(":")[0]:
        raise UserError("sensitivity: --weights is one format (e.g. q4_0 or turbo3:group=64), not a spec")
    device = resolve_device(args.device)
    corpus = load_corpus(args.corpus)
    model = load_model(args.model, device=device)
    if args.model is None:
        print(EMBEDDED_NOTE, file=sys.stderr)
    calibration = None
    if chosen[0] == "gptq":
        calibration = calibration_tokens(model, corpus, args.gptq_sequences, args.gptq_length, args.ctx * args.chunks)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    rows, quality_rows = sensitivity_table(model, args.weights, args.protect, roles, method=chosen[0],
                                           gptq=gptq_options(args), calibration=calibration, corpus=corpus,
                                           ctx=args.ctx, chunks=args.chunks, kv=args.kv, attn=args.attn)
    c = model.config
    mode = (f"everything in {args.weights}, one role at a time protected in {args.protect}" if args.protect
            else f"one role at a time in {args.weights}, the rest unquantized (kept at 16 bits)")
    note = f"\n{EMBEDDED_NOTE}" if args.model is None else ""
    emit(rows, COLUMNS, args,
         f"Role sensitivity ({chosen[0]}): {mode}; {c.name or c.arch}, {quality_rows[0]['case']}, "
         f"{quality_rows[0]['n_tokens']} scored tokens per run, kv {args.kv}. delta_bpw: bits per weight (over the "
         f"studied roles) spent on the role; kld_per_bit = {'recovery' if args.protect else 'kld_mean'} / delta_bpw, "
         f"nats per bit per weight; rank 1 = most KL divergence per bit{note}")
    records = quality_records(quality_rows, device)
    for row in (r for r in rows if math.isfinite(r["kld_per_bit"])):
        records.append(results_store.make_record(
            op="sensitivity", format=f"w:{row['weights']}", backend="torch", variant=quality_rows[0]["variant"],
            case=quality_rows[0]["case"] + (f",protect={args.protect}" if args.protect else ""),
            metric="kld_per_bit", value=row["kld_per_bit"], unit="nats/bpw", direction="higher", device=device))
    store(records, args)
    return 0
