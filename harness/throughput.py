"""Model throughput, llama-bench style: prefill tokens/s (pp<p>) and decode tokens/s (tg<n>) at a
context depth, per KV policy, batch 1; decode eager and, on a GPU, replayed from a CUDA graph.
Where decode (and prefill) time goes is measured in an instrumented run that times each cache write
(encoding K and V), each attention call (the backend: decode + SDPA, or a native kernel) and each
weight matmul separately; the rest is norms, RoPE, activations, embedding and Python.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from .env import environment
from .model import Model
from .model.kv_policy import KVPolicy
from .results import make_record
from .timing import Timing, capture_graph

PREFILL_CHUNK = 512  # depth is prefilled in chunks of this many tokens (bounded attention masks)
NO_CUDA = "unavailable: no CUDA device"

COLUMNS = ["kv", "attn", "bits/value", "test", "depth", "tok/s", "p10", "p90", "noise %", "graph tok/s", "write %",
           "attn %", "matmul %", "rest %"]
SECTIONS = ("cache_write", "attention", "matmul")


@dataclass
class ThroughputRow:
    kv: str
    bits_per_value: float
    op: str  # "prefill" or "decode"
    tokens: int
    depth: int
    timing: Timing  # seconds per run of `tokens` tokens
    graph: Timing | str | None = None  # decode from a CUDA graph, or why not
    shares: dict[str, float] = field(default_factory=dict)  # SECTIONS -> fraction of the instrumented run
    weights: str = ""  # quantized weights spec, if any (harness/weights)
    matmul: str = ""  # how the quantized weights are multiplied
    attn: str = "dequant_sdpa"  # the attention backend it ran with

    @property
    def test(self) -> str:
        return f"{'pp' if self.op == 'prefill' else 'tg'}{self.tokens}"

    @property
    def case(self) -> str:
        return f"{'p' if self.op == 'prefill' else 'n'}{self.tokens},d{self.depth}"

    def tok_s(self, timing: Timing) -> list[float]:
        return [self.tokens / s for s in timing.samples_s]

    def row(self) -> dict:
        rate = Timing(self.tok_s(self.timing))
        graph = self.graph
        if isinstance(graph, Timing):
            graph = round(Timing(self.tok_s(graph)).median, 2)
        return {"kv": self.kv, "weights": self.weights, "matmul": self.matmul,
                "attn": self.attn, "bits/value": round(self.bits_per_value, 3), "test": self.test, "depth": self.depth,
                "tok/s": round(rate.median, 2), "p10": round(rate.p10, 2), "p90": round(rate.p90, 2),
                "noise %": round(100 * rate.noise, 1), "graph tok/s": graph, **self.share_columns()}

    def share_columns(self) -> dict:
        if not self.shares:
            return {"write %": None, "attn %": None, "matmul %": None, "rest %": None}
        parts = {"write %": self.shares["cache_write"], "attn %": self.shares["attention"],
                 "matmul %": self.shares["matmul"]}
        parts["rest %"] = 1.0 - sum(parts.values())
        return {name: round(100 * share, 1) for name, share in parts.items()}


class SectionTimer:
    """Wall time per named section (`with timer.section("attention"):`), synchronizing a GPU around each."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def section(self, name: str):
        _sync(self.device)
        start = time.perf_counter()
        yield
        _sync(self.device)
        self.totals[name] += time.perf_counter() - start


def run_throughput(model: Model, policies: list[KVPolicy | None], n_prompt: list[int], n_gen: list[int],
                   depths: list[int], repetitions: int = 5, attn: str = "dequant_sdpa", graphs: bool = True,
                   seed: int = 0) -> list[ThroughputRow]:
    """Rows in policy, depth, test order. At each depth every policy reads the same tokens and the
    tests are timed round-robin, one repetition of each in turn, so that a drift of the machine's
    speed during the run (seen here at +-10% between back-to-back runs) falls on every policy alike
    instead of on whichever was timed first."""
    keyed = []  # ((policy index, depth index), row)
    gen = torch.Generator().manual_seed(seed)
    prompts, gens = [p for p in n_prompt if p > 0], [n for n in n_gen if n > 0]
    longest = max([*prompts, *gens, 1])
    for di, depth in enumerate(depths):
        tokens = torch.randint(model.config.vocab_size, (1, depth + longest), generator=gen).to(model.device)
        tests = []  # (policy index, op, token count, cache, run)
        for pi, policy in enumerate(policies):
            if prompts:
                cache = filled_cache(model, policy, attn, tokens[:, :depth], longest)
                tests += [(pi, "prefill", p, cache, _prefill_run(model, cache, tokens[:, depth:depth + p], depth))
                          for p in prompts]
            if gens and (model.device.type == "cuda" or not prompts):
                # on a GPU its own cache, no longer than decode needs: the CUDA-graph step reads all of it
                cache = filled_cache(model, policy, attn, tokens[:, :depth], max(gens))
            if gens:
                tests += [(pi, "decode", n, cache, _decode_run(model, cache, tokens[:, depth:depth + n], depth))
                          for n in gens]
        timings = _time_round_robin(model, [t[-1] for t in tests], repetitions)
        for (pi, op, n, cache, run), timing in zip(tests, timings):
            graph = None
            if op == "decode":
                graph = NO_CUDA
                if model.device.type == "cuda" and graphs:
                    try:
                        graph = time_decode_graph(model, cache, tokens[:, depth:depth + n], depth, repetitions)
                    except RuntimeError as exc:
                        graph = f"failed: {str(exc).splitlines()[0][:120]}"
            policy = policies[pi]
            spec = policy.spec if policy is not None else "none"
            config = model.config
            bits = policy.bits_per_value(config.head_dim, depth + n, config.n_kv_heads) if policy is not None \
                else torch.finfo(model.dtype).bits
            keyed.append(((pi, di), ThroughputRow(spec, bits, op, n, depth, timing, graph, _shares(model, run),
                                                  attn=attn)))
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


def filled_cache(model: Model, policy, attn: str, context: torch.Tensor, room: int):
    """A cache of context + room positions holding the context (prefilled in chunks)."""
    cache = model.new_cache(1, context.shape[1] + room, policy, attn)
    for start in range(0, context.shape[1], PREFILL_CHUNK):
        model.forward(context[:, start:start + PREFILL_CHUNK], cache, start, last_only=True)
    return cache


def _prefill_run(model: Model, cache, prompt: torch.Tensor, depth: int):
    cache.check_room(depth, prompt.shape[1])

    def run(sections=None):  # the transformer directly: Model.forward's token checks read values back
        model.transformer(prompt, cache, depth, sections, last_only=True)

    return run


def _decode_run(model: Model, cache, steps: torch.Tensor, depth: int):
    cache.check_room(depth, steps.shape[1])

    def run(sections=None):
        for i in range(steps.shape[1]):
            model.transformer(steps[:, i:i + 1], cache, depth + i, sections)

    return run


def time_decode(model: Model, cache, steps: torch.Tensor, depth: int, repetitions: int):
    return _time_runs(model, _decode_run(model, cache, steps, depth), repetitions)


def time_decode_graph(model: Model, cache, steps: torch.Tensor, depth: int, repetitions: int) -> Timing:
    """Each decode step replayed from one captured CUDA graph (static shapes: the step reads the
    whole cache under a mask; token and position come from device buffers)."""
    token = steps[:, :1].clone()
    position = torch.tensor(depth, device=model.device)
    replay = capture_graph(lambda: model.transformer(token, cache, position))

    def run():
        for i in range(steps.shape[1]):
            token.copy_(steps[:, i:i + 1])
            position.fill_(depth + i)
            replay()

    timing, _ = _time_runs(model, lambda sections=None: run(), repetitions, instrument=False)
    return Timing(timing.samples_s, "cuda-graph")


def _time_runs(model: Model, run, repetitions: int, instrument: bool = True):
    timing = _time_round_robin(model, [run], repetitions)[0]
    return timing, _shares(model, run) if instrument else {}


def _time_round_robin(model: Model, runs: list, repetitions: int) -> list[Timing]:
    """Each run warmed up once, then `repetitions` rounds timing each run once in turn."""
    device = model.device
    for run in runs:
        run()
    samples = [[] for _ in runs]
    for _ in range(repetitions):
        for run, own in zip(runs, samples):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            own.append(time.perf_counter() - start)
    return [Timing(own, "cuda-wall" if device.type == "cuda" else "cpu") for own in samples]


def _shares(model: Model, run) -> dict[str, float]:
    """Where the time of one instrumented run goes: SECTIONS -> fraction of its wall time."""
    timer = SectionTimer(model.device)
    _sync(model.device)
    start = time.perf_counter()
    run(timer)
    _sync(model.device)
    total = time.perf_counter() - start
    return {name: timer.totals[name] / total for name in SECTIONS}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_records(rows: list[ThroughputRow], device: str = "cpu") -> list[dict]:
    records = []
    env = environment(device)
    for r in rows:
        attn = r.attn
        metric = f"{r.op}_tok_s"
        common = dict(op=r.op, format=f"w:{r.weights}|kv:{r.kv}" if r.weights else r.kv, backend="torch",
                      case=r.case, env=env)
        attn_variant = f"{r.matmul}+{attn}" if r.weights else attn
        records.append(make_record(variant=attn_variant, metric=metric, value=Timing(r.tok_s(r.timing)).median,
                                   unit="tok/s", direction="higher", samples=r.tok_s(r.timing), **common))
        if isinstance(r.graph, Timing):
            records.append(make_record(variant=f"{attn_variant}+cuda-graph", metric=metric,
                                       value=Timing(r.tok_s(r.graph)).median, unit="tok/s", direction="higher",
                                       samples=r.tok_s(r.graph), **common))
        if r.shares:  # attn_share: writing and reading the cache, as in earlier records
            attention = r.shares["cache_write"] + r.shares["attention"]
            records.append(make_record(variant=attn_variant, metric="attn_share", value=100 * attention,
                                       unit="%", direction="lower", **common))
            records.append(make_record(variant=attn_variant, metric="cache_write_share",
                                       value=100 * r.shares["cache_write"], unit="%", direction="lower", **common))
    return records
