"""`quantbench search`: KV policies under a bits budget, screened, then the front measured in full."""
from __future__ import annotations

from pathlib import Path

from quantbench.harness.errors import UserError
from quantbench.harness.kv_search import (
    BASELINE,
    DEFAULT_K_ONLY,
    DEFAULT_LADDER,
    DEFAULT_TECHNIQUES,
    DEFAULT_WINDOW_FORMAT,
    DEFAULT_WINDOWS,
    SearchSpace,
    search,
)
from quantbench.harness.landscape_html import render_landscape_html
from quantbench.harness.model import load_model
from quantbench.harness.quality import quality_records
from quantbench.harness.quality.corpus import load_corpus
from quantbench.kernels.storage import write_atomic

from .common import add_output_option, add_store_options, emit, positive_float, positive_int, resolve_device, store

COLUMNS = ["kv", "bits_per_value", "kld_mean", "kld_mean_err", "ratio", "same_top_pct", "ppl", "on_front"]
SCREEN_COLUMNS = ["kv", "bits_per_value", "kld_mean", "kld_mean_err", "on_front"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="KV policies within a bits budget: K/V format pairs, recent windows, techniques; the Pareto "
                       "front of mean KLD against bits per value, against a baseline",
        description="Every candidate is screened on --screen-chunks chunks, then every policy on the screen's "
                    "Pareto front with each of --techniques added (and those that join it with each further "
                    "one); the front of all of them and the baseline are "
                    "measured on --chunks chunks (the same tokens, the same cached reference). Bits per value "
                    "count every window position and trained table at --ctx.")
    p.add_argument("--budget", type=positive_float, required=True, help="most bits per value, e.g. 3.5")
    p.add_argument("-c", "--ctx", type=positive_int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=positive_int, default=8, help="chunks of the final measurement (default 8)")
    p.add_argument("--screen-chunks", type=positive_int, default=2, help="chunks of the screen (default 2)")
    p.add_argument("--ladder", default=",".join(DEFAULT_LADDER),
                   help=f"K and V formats to pair (default {','.join(DEFAULT_LADDER)})")
    p.add_argument("--k-only", default=",".join(DEFAULT_K_ONLY),
                   help="formats only keys take, paired with every ladder format for V, or none (default "
                        "%(default)s: KIVI's per-channel keys; a recent window then covers V only)")
    p.add_argument("--techniques", default=",".join(DEFAULT_TECHNIQUES),
                   help="policy items added one at a time to every policy on the screen's front, and combined "
                        "while they join the front, or none (default %(default)s)")
    p.add_argument("--windows", default=",".join(map(str, DEFAULT_WINDOWS)),
                   help="recent-window sizes to try, or none (default %(default)s)")
    p.add_argument("--window-format", default=DEFAULT_WINDOW_FORMAT,
                   help=f"format of the window positions (default {DEFAULT_WINDOW_FORMAT})")
    p.add_argument("--per-layer", action="store_true",
                   help="also allocate formats per layer and side, greedily by measured KLD gain per bit (one "
                        "measurement per layer, side and ladder format: 2 x layers x (formats - 1) policies)")
    p.add_argument("--baseline", default=BASELINE, help=f"the policy to compare with (default {BASELINE})")
    p.add_argument("--html", metavar="PATH", default=None, help="write the frontier plot as a self-contained page")
    p.add_argument("-m", "--model", default=None, help="GGUF file or Hugging Face folder (default: embedded)")
    p.add_argument("--corpus", metavar="FILE", default=None, help="UTF-8 text to score (default: pydoc topics)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_output_option(p)
    add_store_options(p)
    p.set_defaults(func=run)


def _windows(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--windows {text!r}: expected comma-separated positive integers or none") from None
    if any(size <= 0 for size in sizes):
        raise UserError(f"--windows {text!r}: sizes must be positive")
    return sizes


def _items(text: str) -> tuple[str, ...]:
    """Comma-separated items, or none."""
    if text.strip().lower() == "none":
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def run(args) -> int:
    ladder = _items(args.ladder)
    if not ladder:
        raise UserError("--ladder: no format given")
    space = SearchSpace(ladder, _windows(args.windows), args.window_format, _items(args.k_only),
                        _items(args.techniques))
    space.with_techniques([], n_layers=64)  # a bad item is an error before the model loads
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    found = search(model, args.budget, args.ctx, args.chunks, args.screen_chunks, space, args.baseline,
                   load_corpus(args.corpus), Path(args.model).name if args.model else None, per_layer=args.per_layer)
    final, best, base = found["final"], found["best"], found["baseline"]
    emit(found["screen"], SCREEN_COLUMNS, args, f"screen: {len(found['screen'])} policies within {args.budget} "
         f"bits per value at ctx {args.ctx}, {found['screen'][0]['case']}")
    emit(final, COLUMNS, args, f"front and baseline, {final[0]['case']}; ratio = KLD / {base['kv']}'s")
    if args.output in ("table", "md"):
        if best is None:
            print(f"\nno measured policy within {args.budget} bits per value")
        else:
            print(f"\nbest within {args.budget} bits per value: {best['kv']} at {best['bits_per_value']:.4g} bits, "
                  f"KLD {best['kld_mean']:.4g} ± {best['kld_mean_err']:.2g}, {best['ratio']:.3g} times "
                  f"{base['kv']}'s {base['kld_mean']:.4g} ({base['bits_per_value']:g} bits)")
    if args.html:
        points = [{k: r[k] for k in ("kv", "bits_per_value", "kld_mean", "kld_mean_err", "case")} for r in final]
        page = render_landscape_html([], points, [], title=f"quantbench search --budget {args.budget}",
                                     note=f"best: {best['kv'] if best else 'none'}", pareto_only=True)
        write_atomic(Path(args.html), page.encode("utf-8"))
    store(quality_records(final, device), args)
    return 0
