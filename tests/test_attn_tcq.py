"""Native attn_decode for the TCQ formats: the float64 rotated-domain reference, the numba CPU
kernel, and the numba-cuda const / shared / registers kernels (in the simulator, child process),
each against the op's float64 reference over the dequantized cache within the op's float-derived
tolerance (op.check)."""
import os
import subprocess
import sys
import textwrap

import pytest

from quantbench.harness.registry import Case, Unavailable, find_variant, get_op
from quantbench.kernels import attn_split
from quantbench.kernels.attn_tcq import native_reference

SPECS = ["turbo2_tcq:L=6", "turbo3_tcq:L=6:group=32", "turbo3_tcq:L=7:code=hash:rotate=0:signs=0"]
SHAPES = [dict(batch=2, heads=4, kv_heads=2, n=1, ctx=37, dim=64),  # GQA 2:1, batch 2
          dict(batch=1, heads=3, kv_heads=1, n=5, ctx=12, dim=32)]  # causal tokens, splits some rows never see


def check(case, out):
    op = get_op("attn_decode")  # also loads the op modules Case.inputs needs
    try:
        op.check(case, out, op.reference(case))
    except AssertionError as exc:
        raise AssertionError(f"{case.id}: {exc}") from None


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dims", SHAPES, ids=["gqa", "causal"])
def test_rotated_domain_reference_equals_attention_over_the_dequantized_cache(spec, dims):
    case = Case.make("attn_decode", spec, **dims)
    get_op("attn_decode")  # loads the op modules Case.inputs needs
    q, k, v = attn_split.encode_cache(case)
    check(case, native_reference(q, k, v, case.format_obj, case.kv_heads))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dims", SHAPES, ids=["gqa", "causal"])
def test_numba_native_matches_the_reference(spec, dims):
    case = Case.make("attn_decode", spec, **dims)
    check(case, find_variant("attn_decode", spec, "numba", "native").build(case)())


SIMULATED = textwrap.dedent("""
    from quantbench.harness.registry import Case, Unavailable, find_variant, get_op

    op = get_op("attn_decode")
    dims = dict(batch=1, heads=2, kv_heads=1, n=2, ctx=36, dim=32)  # 32 threads: two tiles, two splits
    for spec, names in (("turbo2_tcq:L=6:code=hash", ("const", "shared", "registers")),
                        ("turbo3_tcq:L=6", ("const", "shared"))):
        case = Case.make("attn_decode", spec, **dims)
        ref = op.reference(case)
        for name in names:
            out = find_variant("attn_decode", spec, "cuda", name).build(case)()
            try:
                op.check(case, out, ref)
            except AssertionError as exc:
                raise AssertionError(f"{spec} {name}: {exc}") from None
    try:
        find_variant("attn_decode", "turbo3_tcq:L=6", "cuda", "registers").build(case)
        raise AssertionError("registers built for a table code")
    except Unavailable as exc:
        assert "use code=hash" in str(exc)
    print("simulated tcq attention ok")
""")


def test_cuda_placement_kernels_match_the_reference_in_the_simulator(tmp_path):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "QUANTBENCH_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SIMULATED], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated tcq attention ok" in done.stdout


def test_tcq_cuda_kernels_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    case = Case.make("attn_decode", "turbo3_tcq:L=6", batch=1, heads=2, kv_heads=1, n=1, ctx=8, dim=32)
    for name in ("const", "shared", "registers"):
        with pytest.raises(Unavailable, match="unavailable: no CUDA device"):
            find_variant("attn_decode", case.format, "cuda", name).build(case)
