"""Native attn_decode for the TCQ formats: the float64 rotated-domain reference, the numba CPU
kernel, and the numba-cuda const / shared / registers kernels (in the simulator, child process),
each against the op's float64 reference over the dequantized cache within the op's float-derived
tolerance (op.check). The numba-cuda variants checked are the registry's `cuda` attn_decode ones."""
import re
import textwrap

import pytest
from emulation import assert_succeeded, run_emulated

from quantbench.kernels.attention import split as attn_split
from quantbench.kernels.attention.tcq_numba import native_reference
from quantbench.kernels.registry import Case, Unavailable, find_variant, get_op, variants

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


HASH = "turbo2_tcq:L=6:code=hash"
TRAINED = "turbo3_tcq:L=6"  # a trained table code
HASH_ONLY = "registers"  # the kernel that computes the hash code in registers: it refuses table codes

# the child prints how many (variant, spec) runs it checked; the parent counts the same runs
SIMULATED = textwrap.dedent(f"""
    from quantbench.kernels.registry import Case, Unavailable, find_variant, get_op, variants

    op = get_op("attn_decode")
    dims = dict(batch=1, heads=2, kv_heads=1, n=2, ctx=36, dim=32)  # 32 threads: two tiles, two splits
    checked = 0
    for spec in ({HASH!r}, {TRAINED!r}):
        case = Case.make("attn_decode", spec, **dims)
        ref = op.reference(case)
        for v in variants(op="attn_decode", format=spec, backend="cuda"):
            if spec == {TRAINED!r} and v.name == {HASH_ONLY!r}:
                continue
            try:
                op.check(case, v.build(case)(), ref)
            except AssertionError as exc:
                raise AssertionError(f"{{spec}} {{v.name}}: {{exc}}") from None
            checked += 1
    try:
        find_variant("attn_decode", {TRAINED!r}, "cuda", {HASH_ONLY!r}).build(case)
        raise AssertionError("{HASH_ONLY} built for a table code")
    except Unavailable as exc:
        assert "use code=hash" in str(exc)
    print("simulated tcq attention ok", checked)
""")


def cuda_kernels(spec):
    return variants(op="attn_decode", format=spec, backend="cuda")


@pytest.mark.emulated
def test_cuda_placement_kernels_match_the_reference_in_the_simulator(tmp_path):
    assert cuda_kernels(HASH) and HASH_ONLY in {v.name for v in cuda_kernels(TRAINED)}
    expected = len(cuda_kernels(HASH)) + len(cuda_kernels(TRAINED)) - 1
    done = run_emulated("numba-cuda", script=SIMULATED, cache=tmp_path)
    assert_succeeded(done, f"simulated tcq attention ok {expected}")


@pytest.mark.cpu_only
def test_tcq_cuda_kernels_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    case = Case.make("attn_decode", TRAINED, batch=1, heads=2, kv_heads=1, n=1, ctx=8, dim=32)
    kernels = cuda_kernels(case.format)
    assert kernels
    for v in kernels:
        with pytest.raises(Unavailable, match=re.escape(f"attn_decode/cuda/{v.name}: unavailable: no CUDA device")):
            v.build(case)
