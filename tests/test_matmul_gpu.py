"""The GPU weight-matmul variants (Triton: kernels/matmul/triton.py; numba-cuda: kernels/matmul/cuda.py)
against the float64 reference, with the op's own check (kernels/matmul/spec.py: float tolerance;
int8_dot against the reference with q8_0-quantized activations). The variants checked are the
registry's: every `triton` gemv / gemm variant of FORMATS, every `cuda` one of CUDA_FORMAT.

They run on CPU tensors in child processes (tests/emulation.py). The Triton variants run in
Triton's interpreter (it works only if TRITON_INTERPRET=1 was set before triton was first
imported; see tests/test_block_kernels.py): the child runs this file with only them as parameters,
with small shapes: m = 1 and 3 (GEMV tiles of 1 and 4 rows), m = 20 (two 16-row tiles, the second
partial), n = 40 (a partial 32-column tile), k = 96 (3 blocks). The numba-cuda variants (weights
through registers / through shared memory) run in the simulator (NUMBA_ENABLE_CUDASIM=1 must
precede the first numba.cuda import), with k = 128 and 256 (one and two rounds of 4 staged blocks)
and n = 40 (a partial block of 32 rows).
"""
import os
import textwrap

import pytest
from emulation import assert_succeeded, output_tail, run_emulated

from quantbench.kernels import registry
from quantbench.kernels.registry import Case, variants

CHILD = "QUANTBENCH_MATMUL_TRITON_CHILD"
IN_CHILD = os.environ.get(CHILD) == "1"
FORMATS = ("q4_0", "q8_0")
CUDA_FORMAT = "q4_0"  # the format the numba-cuda variants serve
SHAPES = {"gemv": ((1, 40, 96), (3, 40, 96)), "gemm": ((20, 40, 96),)}
SIMULATED_SHAPES = {"gemv": (1, 40, 128), "gemm": (3, 40, 256)}


def triton_variants():
    return [pytest.param(op, spec, v, id=f"{op}-{spec}-{v.name}")
            for op in SHAPES for spec in FORMATS for v in variants(op=op, format=spec, backend="triton")]


def cuda_variants(op):
    return variants(op=op, format=CUDA_FORMAT, backend="cuda")


def test_triton_variants_are_registered():
    names = {(op, spec): {v.name for v in variants(op=op, format=spec, backend="triton")}
             for op in SHAPES for spec in FORMATS}
    first = names["gemv", FORMATS[0]]
    assert first, "no Triton gemv variant registered"
    assert all(found == first for found in names.values()), names  # the same kernels for every op and format
    for op in SHAPES:
        for v in variants(op=op, backend="triton"):
            assert v.needs == ("triton",) and v.device == "cuda", v.key


@pytest.mark.emulated
def test_triton_variants_in_an_interpreter_process():
    expected = len(triton_variants())
    assert expected
    child = run_emulated("triton", test_file=__file__, pytest_args=["-k", "matches_the_reference"], env={CHILD: "1"})
    assert_succeeded(child)
    passed = [line for line in child.stdout.splitlines() if "matches_the_reference" in line and "PASSED" in line]
    assert len(passed) == expected, output_tail(child)


if IN_CHILD:  # the parent runs these through test_triton_variants_in_an_interpreter_process
    @pytest.mark.parametrize("op, spec, v", triton_variants())
    def test_triton_variant_matches_the_reference(op, spec, v):
        for m, n, k in SHAPES[op]:
            case = Case.make(op, spec, m=m, n=n, k=k, seed=21)
            o = registry.get_op(op)
            o.check(case, v.build(case)(), o.reference(case))


@pytest.mark.cpu_only
def test_without_gpu_or_interpreter_the_variant_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for op in SHAPES:
        for v in variants(op=op, format="q4_0", backend="triton"):
            with pytest.raises(registry.Unavailable, match="unavailable: no CUDA device"):
                v.build(Case.make(op, "q4_0", m=1, n=32, k=64))


# the child prints how many (variant, op) runs it checked; the parent counts the same runs
SIMULATED_CUDA = textwrap.dedent(f"""
    from quantbench.kernels.registry import Case, get_op, variants

    checked = 0
    for op, (m, n, k) in {SIMULATED_SHAPES!r}.items():
        case = Case.make(op, {CUDA_FORMAT!r}, m=m, n=n, k=k, seed=23)
        for v in variants(op=op, format={CUDA_FORMAT!r}, backend="cuda"):
            get_op(op).check(case, v.build(case)(), get_op(op).reference(case))
            checked += 1
    print("simulated", checked)
""")


@pytest.mark.emulated
def test_cuda_int8_pair_in_a_simulator_process(tmp_path):
    expected = sum(len(cuda_variants(op)) for op in SIMULATED_SHAPES)
    assert expected
    done = run_emulated("numba-cuda", script=SIMULATED_CUDA, cache=tmp_path)
    assert_succeeded(done, f"simulated {expected}")


def test_cuda_pair_is_registered():
    names = {op: {v.name for v in cuda_variants(op)} for op in SHAPES}
    assert names["gemv"] and all(found == names["gemv"] for found in names.values()), names
    for op in SHAPES:
        for v in cuda_variants(op):
            assert v.needs == ("numba-cuda",) and v.device == "cuda", v.key


@pytest.mark.cpu_only
def test_cuda_pair_says_why_it_cannot_run(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    for op in SHAPES:
        for v in cuda_variants(op):
            with pytest.raises(registry.Unavailable, match="unavailable: no CUDA device"):
                v.build(Case.make(op, CUDA_FORMAT, m=1, n=32, k=128))
