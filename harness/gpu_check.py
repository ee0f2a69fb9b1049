"""`quantbench gpu-check`: the prepared validation run of a CUDA machine, each step made of the
harness's own pieces, so its records are the same as bench's, throughput's and profile's.

Steps, in order (about 8 minutes on one H100-class GPU; each step's budget is in STEPS):
  copy        copy bandwidth (the peak every % refers to)
  correct     every GPU variant checked against its reference at the suite's small cases
  attention   native turbo3 / q8_0 / q4_0 decode attention at 32K context (Triton, numba-cuda)
  gemv        fused q4_0 and q8_0 GEMV at 4096x4096 and 11008x4096, % of the copy bandwidth
  codebooks   turbo3 decode attention with the codebook in constant vs shared memory vs registers
  decode      eager vs CUDA-graph decode of a Llama built from its configuration, random weights
  ncu         one ncu run of the turbo3 Triton decode kernel (when ncu is on PATH)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .bench import run_bench, select, to_records
from .peak import COPY_BYTES, copy_bandwidth
from .results import make_record
from .suite_cases import suite_cases
from .timing import TimingConfig

ATTENTION_CASE = dict(batch=1, heads=32, kv_heads=8, n=1, ctx=32768, dim=128)
ATTENTION_FORMATS = ("turbo3", "q8_0", "q4_0")
GEMV_SHAPES = (dict(m=1, n=4096, k=4096), dict(m=1, n=11008, k=4096))
GEMV_FORMATS = ("q4_0", "q8_0")
# a Llama-2-7B-shaped model, 4 layers: the decode step's kernels at real sizes, in seconds
DECODE_CONFIG = dict(n_layers=4, n_heads=32, n_kv_heads=8, head_dim=128, dim=4096, hidden_dim=11008,
                     vocab_size=32000, max_seq_len=8192, name="llama-7b-shaped-4-layers")
BUDGET = TimingConfig(budget_s=0.3, rounds=3)


@dataclass
class StepResult:
    step: str
    status: str  # ok, failed: <why>, unavailable: <why>
    rows: list[dict]
    records: list[dict]


def no_gpu_reason() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "unavailable: no CUDA device"


def step_copy() -> StepResult:
    peak = copy_bandwidth("cuda")
    record = make_record(op="copy", format="f32", backend="torch", variant="copy", case=f"bytes={2 * COPY_BYTES}",
                         metric="copy_gbps", value=peak / 1e9, unit="GB/s", direction="higher", device="cuda")
    return StepResult("copy", "ok", [{"what": "copy bandwidth", "GB/s": round(peak / 1e9, 1)}], [record])


def step_correct() -> StepResult:
    failed, rows = [], []
    for suite_case in suite_cases(mode="small"):
        if suite_case.variant.device != "cuda":
            continue
        try:
            suite_case.prepare(validate=True)
            status = "ok"
        except AssertionError as exc:
            status = f"failed: {str(exc).splitlines()[0][:160]}"
            failed.append(suite_case.id)
        except Exception as exc:  # Unavailable, or a kernel that does not build: the row says which
            status = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        rows.append({"case": suite_case.id, "status": status})
    return StepResult("correct", f"failed: {len(failed)} wrong" if failed else "ok", rows, [])


def _bench(step: str, op: str, formats, backends, shapes, names=None) -> StepResult:
    from quantbench.kernels.registry import Case

    pairs = select(op, list(formats), list(backends), names)
    results = run_bench(op, pairs, lambda spec: [Case.make(op, spec, **dims) for dims in shapes], BUDGET)
    wrong = [r for r in results if r.status.startswith("failed")]
    return StepResult(step, "failed: wrong results" if wrong else "ok", [r.row() for r in results], to_records(results))


def step_attention() -> StepResult:
    return _bench("attention", "attn_decode", ATTENTION_FORMATS, ("triton", "cuda"), [ATTENTION_CASE])


def step_gemv() -> StepResult:
    return _bench("gemv", "gemv", GEMV_FORMATS, ("triton", "cuda"), GEMV_SHAPES)


def step_codebooks() -> StepResult:
    return _bench("codebooks", "attn_decode", ("turbo3",), ("cuda",), [ATTENTION_CASE],
                  ["const", "shared", "registers"])


def step_decode() -> StepResult:
    from . import throughput
    from .model import load_model, parse_kv_policy

    model = load_model(config=DECODE_CONFIG, device="cuda")
    policies = [None, parse_kv_policy("turbo3", n_layers=model.config.n_layers)]
    rows = throughput.run_throughput(model, policies, [0], [32], [4096], repetitions=3, attn="native")
    return StepResult("decode", "ok", [r.row() for r in rows], throughput.to_records(rows, "cuda"))


def step_ncu() -> StepResult:
    from .profiling import session, tool_commands

    missing = tool_commands.missing_tool("ncu")
    if missing:
        return StepResult("ncu", missing, [], [])
    request = session.ProfileRequest("attn_decode", "turbo3", "triton", "native", ATTENTION_CASE, "ncu", calls=1)
    result = session.run_profile(request)
    return StepResult("ncu", "ok", result.rows, result.records)


STEPS: dict[str, Callable[[], StepResult]] = {
    "copy": step_copy, "correct": step_correct, "attention": step_attention, "gemv": step_gemv,
    "codebooks": step_codebooks, "decode": step_decode, "ncu": step_ncu,
}
