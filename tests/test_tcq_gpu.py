"""GPU variants of the TCQ formats on the CPU: Triton encoders in the interpreter, numba-cuda decoders
(constant / shared memory / registers) in the simulator, each equal to the reference.

The variants checked are the registry's (`triton` tcq_encode, `cuda` dequantize). Each runs in a
child process (tests/emulation.py): the interpreter and the simulator take effect only when their
environment variable is set before triton / numba.cuda is first imported, which another test
module of the session may already have done."""
import textwrap

import pytest
from emulation import assert_succeeded, run_emulated

from quantbench.kernels.registry import variants

HASH_SPECS = ("turbo2_tcq:L=8:code=hash", "turbo3_tcq:L=6:code=hash:group=32",
              "turbo2_tcq:L=7:code=hash:rotate=0:signs=0")
TRAINED = "turbo3_tcq:L=6"  # a trained table code
HASH_ONLY = "registers"  # the decoder that computes the hash code in registers: it refuses table codes
ENCODE_SPECS = ("turbo2_tcq:L=6", "turbo3_tcq:L=7:group=32")

# the children print how many (variant, spec) runs they checked; the parent counts the same runs
SIMULATED_DECODE = textwrap.dedent(f"""
    import torch
    from quantbench.kernels.registry import Case, Unavailable, find_variant, get_op, variants

    op = get_op("dequantize")
    checked = 0
    for spec in {HASH_SPECS!r}:
        case = Case.make("dequantize", spec, rows=2, dim=64)
        ref = op.reference(case)
        for v in variants(op="dequantize", format=spec, backend="cuda"):
            out = v.build(case)()
            assert torch.equal(out, ref), (spec, v.name, float((out - ref).abs().max()))
            checked += 1
    trained = Case.make("dequantize", {TRAINED!r}, rows=2, dim=32)
    ref = op.reference(trained)
    for v in variants(op="dequantize", format=trained.format, backend="cuda"):
        if v.name != {HASH_ONLY!r}:
            assert torch.equal(v.build(trained)(), ref), (trained.format, v.name)
            checked += 1
    try:
        find_variant("dequantize", trained.format, "cuda", {HASH_ONLY!r}).build(trained)
        raise AssertionError("{HASH_ONLY} built for a table code")
    except Unavailable as exc:
        assert "use code=hash" in str(exc)
    print("simulated decode ok", checked)
""")

INTERPRETED_ENCODE = textwrap.dedent(f"""
    import numpy as np
    from quantbench.kernels.registry import Case, get_op, variants

    checked = 0
    for spec in {ENCODE_SPECS!r}:
        case = Case.make("tcq_encode", spec, rows=2, dim=32)
        ref = get_op("tcq_encode").reference(case)
        for v in variants(op="tcq_encode", format=spec, backend="triton"):
            out = v.build(case)()
            assert out.encoder == v.name
            assert np.array_equal(out.codes.numpy(), ref[v.name]), (spec, v.name)
            checked += 1
    print("interpreted encode ok", checked)
""")


def cuda_decoders(spec):
    return variants(op="dequantize", format=spec, backend="cuda")


@pytest.mark.emulated
def test_numba_cuda_decoders_match_the_reference_in_the_simulator(tmp_path):
    assert all(cuda_decoders(spec) for spec in HASH_SPECS)
    assert HASH_ONLY in {v.name for v in cuda_decoders(TRAINED)}
    expected = sum(len(cuda_decoders(spec)) for spec in HASH_SPECS) + len(cuda_decoders(TRAINED)) - 1
    done = run_emulated("numba-cuda", script=SIMULATED_DECODE, cache=tmp_path)
    assert_succeeded(done, f"simulated decode ok {expected}")


@pytest.mark.emulated
def test_triton_encoders_match_the_reference_in_the_interpreter(tmp_path):
    expected = sum(len(variants(op="tcq_encode", format=spec, backend="triton")) for spec in ENCODE_SPECS)
    assert expected
    done = run_emulated("triton", script=INTERPRETED_ENCODE, cache=tmp_path)
    assert_succeeded(done, f"interpreted encode ok {expected}")


@pytest.mark.cpu_only
def test_cuda_decoders_say_why_they_cannot_run_here(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    decoders = cuda_decoders("turbo2_tcq")
    assert decoders
    for v in decoders:
        reason = v.availability()
        assert reason.startswith("no CUDA device"), (v.name, reason)
