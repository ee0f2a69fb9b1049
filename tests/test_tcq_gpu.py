"""GPU variants of the TCQ formats on the CPU: Triton encoders in the interpreter, numba-cuda decoders
(constant / shared memory / registers) in the simulator, each equal to the reference.

Each runs in a child process: the interpreter and the simulator take effect only when their
environment variable is set before triton / numba.cuda is first imported, which another test
module of the session may already have done."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from quantbench.harness.registry import find_variant

SIMULATED_DECODE = textwrap.dedent("""
    import torch
    from quantbench.harness.registry import Case, Unavailable, find_variant, get_op

    op = get_op("dequantize")
    for spec in ("turbo2_tcq:L=8:code=hash", "turbo3_tcq:L=6:code=hash:group=32",
                 "turbo2_tcq:L=7:code=hash:rotate=0:signs=0"):
        case = Case.make("dequantize", spec, rows=2, dim=64)
        ref = op.reference(case)
        for name in ("const", "shared", "registers"):
            out = find_variant("dequantize", spec, "cuda", name).build(case)()
            assert torch.equal(out, ref), (spec, name, float((out - ref).abs().max()))
    trained = Case.make("dequantize", "turbo3_tcq:L=6", rows=2, dim=32)
    out = find_variant("dequantize", trained.format, "cuda", "shared").build(trained)()
    assert torch.equal(out, op.reference(trained))
    try:
        find_variant("dequantize", trained.format, "cuda", "registers").build(trained)
        raise AssertionError("registers built for a table code")
    except Unavailable as exc:
        assert "use code=hash" in str(exc)
    print("simulated decode ok")
""")


INTERPRETED_ENCODE = textwrap.dedent("""
    import numpy as np
    from quantbench.harness.registry import Case, find_variant, get_op

    for spec in ("turbo2_tcq:L=6", "turbo3_tcq:L=7:group=32"):
        case = Case.make("tcq_encode", spec, rows=2, dim=32)
        ref = get_op("tcq_encode").reference(case)
        for encoder in ("viterbi", "greedy"):
            out = find_variant("tcq_encode", spec, "triton", encoder).build(case)()
            assert out.encoder == encoder
            assert np.array_equal(out.codes.numpy(), ref[encoder]), (spec, encoder)
    print("interpreted encode ok")
""")


def run_child(script, env_var, tmp_path):
    env = {**os.environ, env_var: "1", "QUANTBENCH_CACHE": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def test_numba_cuda_decoders_match_the_reference_in_the_simulator(tmp_path):
    done = run_child(SIMULATED_DECODE, "NUMBA_ENABLE_CUDASIM", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated decode ok" in done.stdout


def test_triton_encoders_match_the_reference_in_the_interpreter(tmp_path):
    done = run_child(INTERPRETED_ENCODE, "TRITON_INTERPRET", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreted encode ok" in done.stdout


def test_cuda_decoders_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    if torch.cuda.is_available():
        pytest.fail("this test expects a machine without a CUDA device")
    for name in ("const", "shared", "registers"):
        reason = find_variant("dequantize", "turbo2_tcq", "cuda", name).availability()
        assert reason.startswith("no CUDA device")
