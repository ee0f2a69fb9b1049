"""`quantbench tcq-sweep`: TCQ normalized MSE per bits and trellis size L (beside Lloyd-Max and the
Shannon bound), and encode / decode throughput per encoder and backend as a function of L."""
from __future__ import annotations

import sys

from quantbench.harness import threads, trellis_sweep
from quantbench.harness.errors import UserError
from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.turbo_tcq import MAX_TRAINED_L

from .common import add_output_option, add_store_options, emit, positive_float, positive_int, split_list, store


def add_parser(sub) -> None:
    p = sub.add_parser("tcq-sweep",
                       help="trellis-coded quantization: MSE and encode/decode throughput vs trellis size L")
    p.add_argument("--bits", default="2,3", help="bits per value, comma-separated (default 2,3)")
    p.add_argument("--L", dest="Ls", default="6-16",
                   help="state bits: a range and/or list, e.g. 6-16 or 6,9,12 (default 6-16)")
    p.add_argument("--seq", type=positive_int, default=256, help="values per N(0,1) sequence (default 256)")
    p.add_argument("--values", type=positive_int, default=1 << 15, help="N(0,1) values per MSE point (default 32768)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-max-L", type=int, default=10,
                   help=f"largest L whose table is trained (at most {MAX_TRAINED_L}); trained tables are cached, "
                        "but the first training at L=12 takes a few minutes (default 10)")
    p.add_argument("--speed-L", default="6,9,12,16", help="L values of the throughput table (default 6,9,12,16)")
    p.add_argument("--encoders", default="viterbi,greedy", help="encoders to time (default viterbi,greedy)")
    p.add_argument("--backends", default="numpy,numba",
                   help="encode backends to time on this CPU (default numpy,numba)")
    p.add_argument("--dim", type=positive_int, default=64,
                   help="group size of the throughput runs (default 64, head_dim)")
    p.add_argument("--budget", type=positive_float, default=0.3,
                   help="seconds of timing per throughput point (default 0.3)")
    p.add_argument("--no-mse", action="store_true", help="skip the MSE table")
    p.add_argument("--no-speed", action="store_true", help="skip the throughput table")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def _ints(text: str, what: str) -> list[int]:
    try:
        return trellis_sweep.parse_range(text)
    except ValueError:
        raise UserError(f"{what} {text!r}: expected integers such as 6-16 or 6,9,12") from None


def run(args) -> int:
    bits = _ints(args.bits, "--bits")
    if args.train_max_L > MAX_TRAINED_L:
        raise UserError(f"--train-max-L {args.train_max_L}: trained tables go up to L={MAX_TRAINED_L}")
    encoders = split_list(args.encoders) or ["viterbi", "greedy"]
    backends = split_list(args.backends) or ["numpy", "numba"]
    bad = sorted(set(encoders) - {"viterbi", "greedy"}) + sorted(set(backends) - {"numpy", "numba"})
    if bad:
        raise UserError(f"unknown encoder/backend {', '.join(bad)} (encoders: viterbi, greedy; CPU backends: "
                        "numpy, numba; GPU encoders run through `quantbench bench --op tcq_encode`)")
    values = max(1, args.values // args.seq) * args.seq  # whole sequences
    if values != args.values:
        print(f"tcq-sweep: --values {args.values} rounded to {values}, whole sequences of {args.seq}",
              file=sys.stderr)
    try:
        if not args.no_mse:
            print("tcq-sweep: MSE (trains tables on first use)", file=sys.stderr, flush=True)
            rows = trellis_sweep.mse_rows(bits, _ints(args.Ls, "--L"), args.seq, values, args.seed,
                                          args.train_max_L)
            emit(rows, trellis_sweep.MSE_COLUMNS, args,
                 f"TCQ normalized MSE on N(0,1), {values} values in sequences of {args.seq} "
                 "(tail-biting, exactly `bits` per value; free_start: first state free, L-k bits not counted; "
                 f"trained up to L={args.train_max_L})")
            store(trellis_sweep.mse_records(rows, args.seq, values), args)
        if not args.no_speed:
            print("tcq-sweep: throughput", file=sys.stderr, flush=True)
            rows = trellis_sweep.speed_rows(bits, _ints(args.speed_L, "--speed-L"), encoders, backends,
                                            args.dim, args.budget)
            emit(rows, trellis_sweep.SPEED_COLUMNS, args,
                 f"TCQ throughput on this CPU, groups of {args.dim}, {threads.describe()} (tcq_encode: the "
                 "search alone; dequantize: the whole format decode)")
            store(trellis_sweep.speed_records(rows, args.dim), args)
    except FormatError as exc:
        raise UserError(str(exc)) from None
    return 0
