"""`quantbench throughput`: llama-bench style prefill / decode tokens/s of a model per KV policy."""
from __future__ import annotations

import torch

from quantbench.harness import contention, threads, throughput
from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model, parse_kv_policy
from quantbench.harness.model.attention import attention_names, get_attention
from quantbench.harness.model.kv_policy import split_policies

from .common import add_output_option, add_store_options, emit, resolve_device, store
from .throughput_profile import profile_decode
from .weight_options import add_throughput_weight_options, with_weight_variants

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROFILERS = ("torch", "nvtx", "nsys")


def add_parser(sub) -> None:
    p = sub.add_parser("throughput",
                       help="prefill and decode tokens/s of a model per KV cache policy (llama-bench style)")
    p.add_argument("-m", "--model", default=None,
                   help="GGUF file or Hugging Face folder (default: the embedded SmolLM2-135M)")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="build the model from a ModelConfig JSON file with seeded random weights (no model file)")
    p.add_argument("--random-weights", action="store_true",
                   help="keep the model's shapes but use seeded random weights (speed runs only)")
    p.add_argument("--kv", default="f16",
                   help="KV policies, comma-separated: f16,q8_0,turbo3 (layer-adaptive items such as "
                        "'turbo3,first4=q8_0' attach to the policy before them; ';' separates explicitly; "
                        "'none' is the unquantized cache); default f16")
    p.add_argument("--attn", default="auto",
                   help=f"attention backends, comma-separated ({', '.join(attention_names())}); default auto: "
                        "native for decode steps (where a kernel reads the store), dequant_sdpa for prefill")
    p.add_argument("-p", "--n-prompt", default="512", help="prompt tokens (comma list; 0 skips prefill); default 512")
    p.add_argument("-n", "--n-gen", default="128", help="generated tokens (comma list; 0 skips decode); default 128")
    p.add_argument("-d", "--depth", default="0", help="context depth before the test (comma list); default 0")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="timed repetitions per test (default 5)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="weight and activation dtype")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph decode column")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tokens (and random weights)")
    p.add_argument("--profile", choices=PROFILERS, default=None,
                   help="instead of timing, profile one decode step at the first depth: torch (torch.profiler: trace "
                        "and self-time table), nvtx (ranges only, for an outside profiler), nsys (this command "
                        "under nsys: kernel time per range, attention vs matmul)")
    add_throughput_weight_options(p)
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or any(v < 0 for v in values):
        raise UserError(f"{flag} {text!r}: expected non-negative integers")
    return values


def run(args) -> int:
    device = resolve_device(args.device)
    if args.repetitions < 1:
        raise UserError("-r must be at least 1")
    n_prompt, n_gen = int_list(args.n_prompt, "-p"), int_list(args.n_gen, "-n")
    depths = int_list(args.depth, "-d")
    dtype = DTYPES[args.dtype]
    if args.config:
        if args.model:
            raise UserError("give --model or --config, not both")
        model = load_model(config=args.config, seed=args.seed, device=device, dtype=dtype)
    else:
        model = load_model(args.model, random_weights=args.random_weights, seed=args.seed, device=device, dtype=dtype)
    policies = [None if spec.lower() == "none" else parse_kv_policy(spec, n_layers=model.config.n_layers)
                for spec in split_policies(args.kv)]
    if not policies:
        raise UserError("--kv: no policy given")
    backends = [a.strip() for a in args.attn.split(",") if a.strip()]
    for name in backends or [args.attn]:
        get_attention(name)  # an unknown backend fails here, naming it
    if args.profile:
        return profile_decode(model, policies, backends, depths[0], args)
    rows = with_weight_variants(model, args, lambda: [
        row for attn in backends
        for row in throughput.run_throughput(model, policies, n_prompt, n_gen, depths, args.repetitions, attn,
                                             graphs=not args.no_graph, seed=args.seed)])
    c = model.config
    columns = throughput.COLUMNS if not args.weights else ["kv", "weights", "matmul", *throughput.COLUMNS[1:]]
    emit([r.row() for r in rows], columns, args,
         f"{c.name or c.arch} ({c.n_params / 1e6:.0f}M params, {args.dtype}) on {device}, batch 1, "
         f"{threads.describe()}, attention {args.attn}, {args.repetitions} repetitions; "
         "tok/s = median, p10/p90 over repetitions")
    records = throughput.to_records(rows, device)
    contention.flag(records)
    store(records, args)
    return 0
