"""GPU native attn_decode kernels on the CPU: the Triton split-K kernel (turbo and block formats) in
the interpreter, the numba-cuda codebook-placement kernels (const / shared / registers) in the
simulator, each against the op's float64 reference over the dequantized cache, within the op's
float-derived tolerance (kernels/attention/spec.py attention_tolerance, applied by op.check).

The variants checked are the registry's: every `triton` / `cuda` attn_decode variant of each format.
Each runs in a child process (tests/emulation.py): the interpreter and the simulator take effect
only when their environment variable is set before triton / numba.cuda is first imported."""
import re
import textwrap

import pytest
from emulation import assert_succeeded, run_emulated

from quantbench.kernels.registry import Case, Unavailable, variants

# batch 2 / GQA 2:1 / one token; several tokens, one of whose rows sees no key of the last split
# (its partial softmax is empty and must get weight 0 in the merge)
INTERPRETED_SPECS = ("turbo2", "turbo3", "turbo4_mse", "turbo3:group=32", "turbo2:rotate=0:signs=0",
                     "q8_0", "q4_0", "q4_1")
INTERPRETED_SHAPES = [dict(batch=2, heads=4, kv_heads=2, n=1, ctx=70, dim=64),
                      dict(batch=1, heads=2, kv_heads=1, n=9, ctx=40, dim=32)]
SIMULATED_SPECS = ("turbo2", "turbo3")
SIMULATED_DIMS = dict(batch=1, heads=2, kv_heads=1, n=2, ctx=40, dim=32)  # 32 threads: two tiles, two splits

SIMULATED_SHAPES = [SIMULATED_DIMS]


def checking_script(backend: str, specs, shapes, label: str) -> str:
    """Source of a child that checks every `backend` attn_decode variant of each spec at each shape
    and prints `label` with how many (variant, spec, shape) runs it checked; the parent counts the
    same runs from the registry."""
    return textwrap.dedent(f"""
        from quantbench.kernels.registry import Case, get_op, variants

        op = get_op("attn_decode")
        checked = 0
        for spec in {tuple(specs)!r}:
            for dims in {list(shapes)!r}:
                case = Case.make("attn_decode", spec, **dims)
                ref = op.reference(case)
                for v in variants(op="attn_decode", format=spec, backend={backend!r}):
                    try:
                        op.check(case, v.build(case)(), ref)
                    except AssertionError as exc:
                        raise AssertionError(f"{{v.name}} {{spec}} {{dims}}: {{exc}}") from None
                    checked += 1
        print({label!r}, checked)
    """)


def expected_runs(specs, backend, shapes=1):
    runs = sum(len(variants(op="attn_decode", format=spec, backend=backend)) for spec in specs) * shapes
    assert runs, f"no {backend} attn_decode variant registered for {specs}"
    return runs


@pytest.mark.emulated
def test_triton_native_attention_matches_the_reference_in_the_interpreter(tmp_path):
    expected = expected_runs(INTERPRETED_SPECS, "triton", len(INTERPRETED_SHAPES))
    script = checking_script("triton", INTERPRETED_SPECS, INTERPRETED_SHAPES, "interpreted attention ok")
    done = run_emulated("triton", script=script, cache=tmp_path)
    assert_succeeded(done, f"interpreted attention ok {expected}")


@pytest.mark.emulated
def test_cuda_placement_kernels_match_the_reference_in_the_simulator(tmp_path):
    expected = expected_runs(SIMULATED_SPECS, "cuda")
    script = checking_script("cuda", SIMULATED_SPECS, SIMULATED_SHAPES, "simulated attention ok")
    done = run_emulated("numba-cuda", script=script, cache=tmp_path)
    assert_succeeded(done, f"simulated attention ok {expected}")


@pytest.mark.cpu_only
def test_gpu_attention_kernels_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = Case.make("attn_decode", "turbo3", batch=1, heads=2, kv_heads=1, n=1, ctx=8, dim=32)
    gpu = [v for v in variants(op="attn_decode", format="turbo3") if v.device == "cuda"]
    assert {v.backend for v in gpu} == {"triton", "cuda"}
    for v in gpu:
        assert v.availability().startswith("no CUDA device"), v.key
        message = f"attn_decode/{v.backend}/{v.name}: unavailable: no CUDA device"
        with pytest.raises(Unavailable, match=re.escape(message)):
            v.build(case)
