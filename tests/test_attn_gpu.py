"""GPU native attn_decode kernels on the CPU: the Triton split-K kernel (turbo and block formats) in
the interpreter, the numba-cuda codebook-placement kernels (const / shared / registers) in the
simulator, each against the op's float64 reference over the dequantized cache, within the op's
float-derived tolerance (harness/ops_attention.attention_tolerance, applied by op.check).

Each runs in a child process: the interpreter and the simulator take effect only when their
environment variable is set before triton / numba.cuda is first imported."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from quantbench.harness.registry import Case, Unavailable, find_variant

# batch 2 / GQA 2:1 / one token; several tokens, one of whose rows sees no key of the last split
# (its partial softmax is empty and must get weight 0 in the merge)
SHAPES = textwrap.dedent("""
    SHAPES = [dict(batch=2, heads=4, kv_heads=2, n=1, ctx=70, dim=64),
              dict(batch=1, heads=2, kv_heads=1, n=9, ctx=40, dim=32)]
""")

INTERPRETED = SHAPES + textwrap.dedent("""
    from quantbench.harness.registry import Case, find_variant, get_op

    op = get_op("attn_decode")
    for spec in ("turbo2", "turbo3", "turbo4_mse", "turbo3:group=32", "turbo2:rotate=0:signs=0",
                 "q8_0", "q4_0", "q4_1"):
        for dims in SHAPES:
            case = Case.make("attn_decode", spec, **dims)
            out = find_variant("attn_decode", spec, "triton", "native").build(case)()
            try:
                op.check(case, out, op.reference(case))
            except AssertionError as exc:
                raise AssertionError(f"{spec} {dims}: {exc}") from None
    print("interpreted attention ok")
""")

SIMULATED = textwrap.dedent("""
    from quantbench.harness.registry import Case, find_variant, get_op

    op = get_op("attn_decode")
    dims = dict(batch=1, heads=2, kv_heads=1, n=2, ctx=40, dim=32)  # 32 threads: two tiles, two splits
    for spec in ("turbo2", "turbo3"):
        case = Case.make("attn_decode", spec, **dims)
        ref = op.reference(case)
        for name in ("const", "shared", "registers"):
            out = find_variant("attn_decode", spec, "cuda", name).build(case)()
            try:
                op.check(case, out, ref)
            except AssertionError as exc:
                raise AssertionError(f"{spec} {name}: {exc}") from None
    print("simulated attention ok")
""")


def run_child(script, env_var, tmp_path):
    env = {**os.environ, env_var: "1", "QUANTBENCH_CACHE": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)


def test_triton_native_attention_matches_the_reference_in_the_interpreter(tmp_path):
    done = run_child(INTERPRETED, "TRITON_INTERPRET", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreted attention ok" in done.stdout


def test_cuda_placement_kernels_match_the_reference_in_the_simulator(tmp_path):
    done = run_child(SIMULATED, "NUMBA_ENABLE_CUDASIM", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated attention ok" in done.stdout


def test_gpu_attention_kernels_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.fail("this test expects a machine without a CUDA device")
    case = Case.make("attn_decode", "turbo3", batch=1, heads=2, kv_heads=1, n=1, ctx=8, dim=32)
    for backend, name in (("triton", "native"), ("cuda", "const"), ("cuda", "shared"), ("cuda", "registers")):
        v = find_variant("attn_decode", "turbo3", backend, name)
        assert v.availability().startswith("no CUDA device"), (backend, name)
        with pytest.raises(Unavailable, match=f"attn_decode/{backend}/{name}: unavailable: no CUDA device"):
            v.build(case)
