"""The GPU weight-matmul variants (Triton: kernels/matmul_triton.py; numba-cuda: kernels/matmul_cuda.py) against the float64 reference, with
the op's own check (harness/ops_weights.py: float tolerance; int8_dot against the reference with
q8_0-quantized activations).

Without a GPU they run in Triton's interpreter on CPU tensors, in a child process (the interpreter
works only if TRITON_INTERPRET=1 was set before triton was first imported; see
tests/test_block_kernels.py), with small shapes: m = 1 and 3 (GEMV tiles of 1 and 4 rows), m = 20
(two 16-row tiles, the second partial), n = 40 (a partial 32-column tile), k = 96 (3 blocks).
The numba-cuda pair (weights through registers / through shared memory) runs in the simulator,
also in a child process (NUMBA_ENABLE_CUDASIM=1 must precede the first numba.cuda import), with
k = 128 and 256 (one and two rounds of 4 staged blocks) and n = 40 (a partial block of 32 rows).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from quantbench.harness import registry
from quantbench.harness.registry import Case, variants

CHILD = "QUANTBENCH_MATMUL_TRITON_CHILD"
IN_CHILD = os.environ.get(CHILD) == "1"
FORMATS = ("q4_0", "q8_0")
SHAPES = {"gemv": ((1, 40, 96), (3, 40, 96)), "gemm": ((20, 40, 96),)}


def triton_variants():
    return [pytest.param(op, spec, v, id=f"{op}-{spec}-{v.name}")
            for op in SHAPES for spec in FORMATS for v in variants(op=op, format=spec, backend="triton")]


def test_triton_variants_are_registered():
    for op in SHAPES:
        for spec in FORMATS:
            names = {v.name for v in variants(op=op, format=spec, backend="triton")}
            assert names == {"fused_fma", "int8_dot"}, (op, spec)
    for v in variants(op="gemv", backend="triton"):
        assert v.needs == ("triton",) and v.device == "cuda"


def test_triton_variants_in_an_interpreter_process():
    expected = sum(len(variants(op=op, format=spec, backend="triton")) for op in SHAPES for spec in FORMATS)
    env = {**os.environ, "TRITON_INTERPRET": "1", CHILD: "1"}
    child = subprocess.run([sys.executable, "-m", "pytest", __file__, "-v", "-p", "no:cacheprovider",
                            "-k", "matches_the_reference"], env=env, capture_output=True, text=True)
    report = child.stdout[-4000:] + child.stderr[-2000:]
    assert child.returncode == 0, report
    passed = [line for line in child.stdout.splitlines() if "matches_the_reference" in line and "PASSED" in line]
    assert len(passed) == expected, report


if IN_CHILD:  # the parent runs these through test_triton_variants_in_an_interpreter_process
    @pytest.mark.parametrize("op, spec, v", triton_variants())
    def test_triton_variant_matches_the_reference(op, spec, v):
        for m, n, k in SHAPES[op]:
            case = Case.make(op, spec, m=m, n=n, k=k, seed=21)
            o = registry.get_op(op)
            o.check(case, v.build(case)(), o.reference(case))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU runs the kernels for real")
def test_without_gpu_or_interpreter_the_variant_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    v = registry.find_variant("gemv", "q4_0", "triton", "fused_fma")
    with pytest.raises(registry.Unavailable, match="unavailable: no CUDA device"):
        v.build(Case.make("gemv", "q4_0", m=1, n=32, k=64))


SIMULATED_CUDA = textwrap.dedent("""
    from quantbench.harness.registry import Case, get_op, variants

    checked = 0
    for op, (m, n, k) in (("gemv", (1, 40, 128)), ("gemm", (3, 40, 256))):
        case = Case.make(op, "q4_0", m=m, n=n, k=k, seed=23)
        for v in variants(op=op, format="q4_0", backend="cuda"):
            get_op(op).check(case, v.build(case)(), get_op(op).reference(case))
            checked += 1
    print("simulated", checked)
""")


def test_cuda_int8_pair_in_a_simulator_process():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    child = subprocess.run([sys.executable, "-c", SIMULATED_CUDA], env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-4000:]
    assert "simulated 4" in child.stdout  # registers and shared, gemv and gemm


def test_cuda_pair_is_registered_and_says_why_it_cannot_run(monkeypatch):
    for op in SHAPES:
        assert {v.name for v in variants(op=op, format="q4_0", backend="cuda")} == {"int8_registers", "int8_shared"}
    if torch.cuda.is_available():
        return
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    v = registry.find_variant("gemv", "q4_0", "cuda", "int8_shared")
    with pytest.raises(registry.Unavailable, match="unavailable: no CUDA device"):
        v.build(Case.make("gemv", "q4_0", m=1, n=32, k=128))
