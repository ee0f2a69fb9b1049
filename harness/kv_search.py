"""A search of KV policies under a bits budget (`quantbench search`).

The space: a K format and a V format from a ladder (asymmetric pairs included), each pair plain and
with a recent window of each size in a higher format (kv_techniques/window.py), keeping the policies
whose bits per value at the context measured (every window position counted) are within the
budget. Every candidate is screened on a few chunks; the screen's Pareto front (no other candidate
has at most its bits and a lower KLD) and the baseline are then measured on the full chunk count,
on the same tokens and the same cached reference.

Per layer and side (`per_layer`, after KVTuner's sensitivity-driven allocation): from the best
screened policy's techniques, with every layer's K and V at the ladder's cheapest format, each
(layer, side, format) is measured alone, one slot changed; the measured KLD gains are then taken
as additive, and slots are upgraded greedily by gain per bit while the budget allows. The
allocation is measured with the front, in full.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from quantbench.harness.errors import UserError
from quantbench.harness.landscape_html import pareto_frontier
from quantbench.harness.model import parse_kv_policy
from quantbench.harness.model.kv_policy import KVPolicy
from quantbench.harness.quality import quality_table

DEFAULT_LADDER = ("turbo2_tcq", "turbo3_tcq", "turbo4_mse", "q4_0_rot")
DEFAULT_WINDOWS = (16, 24, 32, 48, 64)
DEFAULT_WINDOW_FORMAT = "q8_0"
BASELINE = "q4_0_rot"


@dataclass(frozen=True)
class SearchSpace:
    ladder: tuple[str, ...] = DEFAULT_LADDER
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    window_format: str = DEFAULT_WINDOW_FORMAT

    def policies(self, n_layers: int) -> list:
        out = []
        for k in self.ladder:
            for v in self.ladder:
                base = k if k == v else f"k={k},v={v}"
                out.append(base)
                out.extend(f"{base},window{w}={self.window_format}" for w in self.windows)
        return [parse_kv_policy(spec, n_layers=n_layers) for spec in out]


def within_budget(policies: list, budget: float, head_dim: int, ctx: int) -> list:
    return [p for p in policies if p.bits_per_value(head_dim, ctx) <= budget + 1e-9]


def layer_allocation(model, budget: float, ctx: int, chunks: int, ladder: tuple[str, ...], techniques: tuple,
                     corpus=None, model_name: str | None = None, progress: bool = True) -> KVPolicy | None:
    """The greedy per-layer allocation (module docstring); None when even the cheapest policy is over."""
    n, head_dim = model.config.n_layers, model.config.head_dim
    canonical = [parse_kv_policy(spec, n_layers=1).k_formats[0] for spec in ladder]
    bits = {spec: parse_kv_policy(spec, n_layers=1).bits_per_value(head_dim) for spec in canonical}
    rungs = sorted(set(canonical), key=lambda spec: bits[spec])

    def policy(choice: dict) -> KVPolicy:
        k = tuple(choice[layer, "k"] for layer in range(n))
        return KVPolicy(k, tuple(choice[layer, "v"] for layer in range(n)), techniques)

    start = {(layer, side): rungs[0] for layer in range(n) for side in "kv"}
    if policy(start).bits_per_value(head_dim, ctx) > budget + 1e-9:
        return None
    tests = {(slot, spec): policy({**start, slot: spec}) for slot in start for spec in rungs[1:]}
    rows = quality_table(model, [policy(start), *tests.values()], corpus, ctx, chunks, model_name=model_name,
                         progress=progress)
    kld = {row["kv"]: row["kld_mean"] for row in rows}
    gain = {key: kld[policy(start).spec] - kld[p.spec] for key, p in tests.items()}
    choice = dict(start)
    while True:
        spent = policy(choice).bits_per_value(head_dim, ctx)
        steps = []
        for slot, current in choice.items():
            for spec in rungs[rungs.index(current) + 1:]:
                extra = gain[slot, spec] - gain.get((slot, current), 0.0)
                after = policy({**choice, slot: spec}).bits_per_value(head_dim, ctx)
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
    head_dim = model.config.head_dim
    candidates = within_budget(space.policies(model.config.n_layers), budget, head_dim, ctx)
    if not candidates:
        raise UserError(f"search: no policy of the space fits {budget} bits per value at ctx {ctx} "
                        f"(ladder {', '.join(space.ladder)})")
    screen = quality_table(model, candidates, corpus, ctx, min(screen_chunks, chunks), model_name=model_name,
                           progress=progress)
    front = {p["kv"] for p in pareto_frontier(screen)}
    finalists = [p for p in candidates if p.spec in front]
    if per_layer:
        kld = {row["kv"]: row["kld_mean"] for row in screen}
        best_screened = min(candidates, key=lambda p: kld[p.spec])
        allocated = layer_allocation(model, budget, ctx, min(screen_chunks, chunks), space.ladder,
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
