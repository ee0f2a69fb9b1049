"""A search of KV policies under a bits budget (`quantbench search`).

The space: a K format and a V format from a ladder (asymmetric pairs included; `k_only` adds K
formats that only keys take, such as kivi2's per-channel keys), each pair plain and with a recent
window of each size in a higher format (kv_techniques/window.py; on V alone where K is a token-axis
format, which keeps its own recent tokens), keeping the policies whose bits per value at the context
measured (every window position and trained table counted) are within the budget and that a cache
can be built with. Every candidate is screened on a few chunks. Each policy on the screen's Pareto
front (no other candidate has at most its bits and a lower KLD) is then screened again with each
technique item of `techniques` added (equalization, pre-RoPE keys, sinks...); those that join the
front are tried with each further item, and so on while the front grows. The front of all of them
and the baseline are measured on the full chunk count, on the same tokens and the same cached
reference.

Per layer and side (`per_layer`, after KVTuner's sensitivity-driven allocation): from the best
screened policy's techniques, with every layer's K and V at the ladder's cheapest format, each
(layer, side, format) is measured alone, one slot changed; the measured KLD gains are then taken
as additive, and slots are upgraded greedily by gain per bit while the budget allows. The
allocation is measured with the front, in full.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from quantbench.harness.errors import UserError
from quantbench.harness.landscape_html import pareto_frontier
from quantbench.harness.model import parse_kv_policy
from quantbench.harness.model.errors import ModelError
from quantbench.harness.model.kv_policy import KVPolicy
from quantbench.harness.quality import quality_table
from quantbench.kernels.errors import FormatError
from quantbench.kernels.formats.token_groups import token_group_format

DEFAULT_LADDER = ("turbo2_tcq", "turbo3_tcq", "turbo4_mse", "q4_0_rot")
DEFAULT_K_ONLY = ("kivi2",)
DEFAULT_WINDOWS = (16, 24, 32, 48, 64)
DEFAULT_WINDOW_FORMAT = "q8_0"
DEFAULT_TECHNIQUES = ("k.equalize=auto", "k.prerope=on", "sinks4=q8_0")
BASELINE = "q4_0_rot"


@dataclass(frozen=True)
class SearchSpace:
    ladder: tuple[str, ...] = DEFAULT_LADDER
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    window_format: str = DEFAULT_WINDOW_FORMAT
    k_only: tuple[str, ...] = DEFAULT_K_ONLY
    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES

    def policies(self, n_layers: int) -> list:
        out = []
        for k in dict.fromkeys(self.ladder + self.k_only):
            for v in self.ladder:
                base = k if k == v else f"k={k},v={v}"
                side = "v." if token_group_format(k) else ""
                out.append(base)
                out.extend(f"{base},{side}window{w}={self.window_format}" for w in self.windows)
        return [parse_kv_policy(spec, n_layers=n_layers) for spec in out]

    def with_techniques(self, policies: list, n_layers: int) -> list:
        """Every policy with each technique item added, where it holds no item of that name yet."""
        items = [(item, _technique(item, n_layers)) for item in self.techniques]
        out = []
        for policy in policies:
            held = {(t.name, side) for t in policy.techniques for side in t.sides}
            for item, technique in items:
                if not held & {(technique.name, side) for side in technique.sides}:
                    out.append(parse_kv_policy(f"{policy.spec},{item}", n_layers=n_layers))
        return out


def _technique(item: str, n_layers: int):
    techniques = parse_kv_policy(f"f16,{item}", n_layers=n_layers).techniques
    if len(techniques) != 1:
        raise UserError(f"search: technique {item!r} is not one technique item (such as k.equalize=auto)")
    return techniques[0]


def _same_policy(policy: KVPolicy) -> tuple:
    """What two policies that differ only in the order of their items share."""
    return policy.k_formats, policy.v_formats, frozenset(policy.techniques)


def within_budget(policies: list, budget: float, config, ctx: int) -> list:
    return [p for p in policies if p.bits_per_value(config.head_dim, ctx, config.n_kv_heads) <= budget + 1e-9]


def buildable(model, policies: list, progress: bool = True) -> list:
    """The policies a cache can be built with; the others are named on stderr with the reason."""
    out = []
    for policy in policies:
        try:
            model.new_cache(1, 1, policy)
        except (ModelError, FormatError) as exc:
            if progress:
                print(f"search: leaving out {policy.spec}: {exc}", file=sys.stderr)
            continue
        out.append(policy)
    return out


def layer_allocation(model, budget: float, ctx: int, chunks: int, ladder: tuple[str, ...], techniques: tuple,
                     corpus=None, model_name: str | None = None, progress: bool = True) -> KVPolicy | None:
    """The greedy per-layer allocation (module docstring); None when even the cheapest policy is over."""
    config = model.config
    n = config.n_layers
    canonical = [parse_kv_policy(spec, n_layers=1).k_formats[0] for spec in ladder]
    bits = {spec: parse_kv_policy(spec, n_layers=1).bits_per_value(config.head_dim, ctx, config.n_kv_heads)
            for spec in canonical}
    rungs = sorted(set(canonical), key=lambda spec: bits[spec])

    def policy(choice: dict) -> KVPolicy:
        k = tuple(choice[layer, "k"] for layer in range(n))
        return KVPolicy(k, tuple(choice[layer, "v"] for layer in range(n)), techniques)

    start = {(layer, side): rungs[0] for layer in range(n) for side in "kv"}
    if not within_budget([policy(start)], budget, config, ctx):
        return None
    tests = {(slot, spec): policy({**start, slot: spec}) for slot in start for spec in rungs[1:]}
    rows = quality_table(model, [policy(start), *tests.values()], corpus, ctx, chunks, model_name=model_name,
                         progress=progress)
    kld = {row["kv"]: row["kld_mean"] for row in rows}
    gain = {key: kld[policy(start).spec] - kld[p.spec] for key, p in tests.items()}
    choice = dict(start)
    while True:
        spent = policy(choice).bits_per_value(config.head_dim, ctx, config.n_kv_heads)
        steps = []
        for slot, current in choice.items():
            for spec in rungs[rungs.index(current) + 1:]:
                extra = gain[slot, spec] - gain.get((slot, current), 0.0)
                after = policy({**choice, slot: spec}).bits_per_value(config.head_dim, ctx, config.n_kv_heads)
                if extra > 0 and after <= budget + 1e-9:
                    steps.append((extra / (after - spent) if after > spent else math.inf, slot, spec))
        if not steps:
            return policy(choice)
        _, slot, spec = max(steps)
        choice[slot] = spec


def search(model, budget: float, ctx: int, chunks: int, screen_chunks: int, space: SearchSpace = SearchSpace(),
           baseline: str = BASELINE, corpus=None, model_name: str | None = None, progress: bool = True,
           per_layer: bool = False) -> dict:
    """{'screen': rows of every candidate, 'final': rows of the screen's front and the baseline,
    'best': the final row of lowest KLD within the budget (None if none), 'baseline': its row}; rows as
    quality_table's, plus `on_front` (on the Pareto front of their table) and, in 'final', `ratio`
    (KLD over the baseline's)."""
    n_layers = model.config.n_layers
    candidates = buildable(model, within_budget(space.policies(n_layers), budget, model.config, ctx), progress)
    if not candidates:
        raise UserError(f"search: no policy of the space fits {budget} bits per value at ctx {ctx} "
                        f"(ladder {', '.join(space.ladder)})")
    screen_chunks = min(screen_chunks, chunks)
    screen = quality_table(model, candidates, corpus, ctx, screen_chunks, model_name=model_name, progress=progress)
    front = {p["kv"] for p in pareto_frontier(screen)}
    grown = [p for p in candidates if p.spec in front]
    for _ in space.techniques:  # a round adds one more item to the policies that joined the front
        seen = {_same_policy(p) for p in candidates}
        fresh = {}
        for policy in space.with_techniques(grown, n_layers):
            if _same_policy(policy) not in seen:
                fresh.setdefault(_same_policy(policy), policy)
        added = buildable(model, within_budget(list(fresh.values()), budget, model.config, ctx), progress)
        if not added:
            break
        screen += quality_table(model, added, corpus, ctx, screen_chunks, model_name=model_name, progress=progress)
        candidates += added
        front = {p["kv"] for p in pareto_frontier(screen)}
        grown = [p for p in added if p.spec in front]
    finalists = [p for p in candidates if p.spec in front]
    if per_layer:
        kld = {row["kv"]: row["kld_mean"] for row in screen}
        best_screened = min(candidates, key=lambda p: kld[p.spec])
        allocated = layer_allocation(model, budget, ctx, screen_chunks, space.ladder,
                                     best_screened.techniques, corpus, model_name, progress)
        if allocated is not None and allocated.spec not in front:
            finalists.append(allocated)
    finalists.append(parse_kv_policy(baseline, n_layers=model.config.n_layers))
    final = quality_table(model, finalists, corpus, ctx, chunks, model_name=model_name, progress=progress)
    base = next(r for r in final if r["kv"] == finalists[-1].spec)
    final_front = {p["kv"] for p in pareto_frontier(final)}
    for row in screen:
        row["on_front"] = row["kv"] in front
    for row in final:
        row["on_front"] = row["kv"] in final_front
        row["ratio"] = row["kld_mean"] / base["kld_mean"]
    fitting = [r for r in final if r["bits_per_value"] <= budget + 1e-9 and r["kv"] != base["kv"]]
    best = min(fitting, key=lambda r: r["kld_mean"]) if fitting else None
    return {"screen": screen, "final": final, "best": best, "baseline": base}
