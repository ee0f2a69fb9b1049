"""The weight matmuls gemv / gemm: every CPU variant against the float64 reference (kernels/matmul/spec.py
derives the tolerance), on seeded random weights and on a real weight matrix of the embedded model;
`linear` for the model; the traffic model; bad shapes and formats.

Triton and numba-cuda variants are tested in tests/test_matmul_gpu.py (interpreter / simulator).
"""
import functools

import pytest
import torch

from quantbench.harness.errors import UserError
from quantbench.kernels import formats, registry
from quantbench.kernels.errors import FormatError
from quantbench.kernels.matmul import spec as ops_weights
from quantbench.kernels.matmul.numba import SUPPORTED, linear
from quantbench.kernels.matmul.spec import QuantizedActivations, weight_reference, weight_specs
from quantbench.kernels.registry import Case, variants

SPECS = ("f32", "q8_0", "q4_0", "q4_1", "turbo3:group=64", "turbo2:group=32", "turbo4_mse:group=128",
         "turbo4:group=64", "q4_0_rot:group=128")
# m: 1 and 3 take the GEMV kernels; 37 the tiled one. n = 40: a partial tile of 16 rows;
# k = 384: a partial tile of 256 columns (12 blocks, 6 groups of 64, 3 of 128)
# n = 7 and n = 1: the numba GEMV takes weight rows in groups of 4, the last group clamped
SHAPES = {"gemv": ((1, 40, 384), (3, 40, 384), (2, 7, 384), (4, 1, 384)), "gemm": ((37, 40, 384),)}


OWN_SHAPES = {("torch", "int4pack")}  # packs 16 output rows at a time: n = 40 is refused; tests/test_torch_int4.py


def cpu_variants(op):
    return [pytest.param(spec, v, id=f"{spec}-{v.backend}-{v.name}")
            for spec in SPECS for v in variants(op=op, format=spec)
            if v.backend in ("torch", "numba") and v.device == "cpu" and (v.backend, v.name) not in OWN_SHAPES]


def run_checked(v, case):
    op = registry.get_op(case.op)
    out = v.build(case)()
    op.check(case, out, op.reference(case))
    return out


@pytest.mark.parametrize("op", ["gemv", "gemm"])
def test_registered_variants(op):
    for spec in weight_specs():
        assert ("torch", "dequant_matmul") in {(v.backend, v.name) for v in variants(op=op, format=spec)}, spec
    for name, supported in SUPPORTED.items():
        for fmt in supported:
            assert [v for v in variants(op=op, format=fmt, backend="numba", name=name)], (name, fmt)
    assert not variants(op=op, format="turbo4:group=64", backend="numba")


@pytest.mark.parametrize("op", ["gemv", "gemm"])
def test_every_cpu_variant_matches_the_reference(op):
    for spec, v in [p.values for p in cpu_variants(op)]:
        for m, n, k in SHAPES[op]:
            out = run_checked(v, Case.make(op, spec, m=m, n=n, k=k, seed=5))
            y = out.y if isinstance(out, QuantizedActivations) else out
            assert y.shape == (m, n) and y.dtype == torch.float32


def test_check_catches_a_wrong_output():
    case = Case.make("gemv", "q4_0", m=1, n=40, k=320, seed=5)
    op = registry.get_op("gemv")
    ref = op.reference(case)
    y = ref.y.float().clone()
    op.check(case, y, ref)
    y[0, 7] += 1e-3 * float(ref.y.abs().max())  # one output off by 0.1% of the largest
    with pytest.raises(AssertionError, match="exceeds tolerance"):
        op.check(case, y, ref)


def test_int8_dot_is_checked_against_quantized_activations():
    """The int8 result differs from the float reference by the activations' 8-bit rounding: far
    beyond the float tolerance, so the check must (and does) use the q8_0-activation reference."""
    case = Case.make("gemv", "q4_0", m=1, n=40, k=320, seed=5)
    v = registry.find_variant("gemv", "q4_0", "numba", "int8_dot")
    out = run_checked(v, case)
    op = registry.get_op("gemv")
    with pytest.raises(AssertionError, match="exceeds tolerance"):
        op.check(case, out.y, op.reference(case))


@functools.cache
def embedded_ffn_down() -> torch.Tensor:
    """blk.0.ffn_down (w2, [576, 1536]) of the embedded model, dequantized from its Q4_1 blocks."""
    from quantbench.harness.model import default_model_path
    from quantbench.harness.model.gguf_dequant import dequantize
    from quantbench.harness.model.gguf_file import GgufFile

    reader = GgufFile(default_model_path())
    info = reader.tensors["blk.0.ffn_down.weight"]
    return torch.from_numpy(dequantize(info, reader.data(info)))


@pytest.mark.parametrize("spec", ["q8_0", "q4_0", "q4_1", "turbo3:group=64"])
def test_numba_variants_on_a_real_weight(spec, monkeypatch):
    """Re-quantized real weights (w2 of layer 0, rows 0..63) with activations of their scale."""
    w = embedded_ffn_down()[:64]
    x = torch.randn(2, w.shape[1], generator=torch.Generator().manual_seed(1))
    ops_weights._packed_cpu.cache_clear()
    ops_weights.weight_reference.cache_clear()
    monkeypatch.setattr(ops_weights, "weight_inputs", lambda case: {"x": x, "w": w})
    try:
        for op in ("gemv", "gemm"):
            case = Case.make(op, spec, m=2, n=64, k=1536, seed=99)
            ref = weight_reference(case)
            assert torch.equal(ref.weights, case.format_obj.roundtrip(w).double())
            for v in variants(op=op, format=spec, backend="numba"):
                run_checked(v, case)
    finally:
        ops_weights._packed_cpu.cache_clear()
        ops_weights.weight_reference.cache_clear()


@pytest.mark.parametrize("variant_name", ["fused_fma", "int8_dot"])
def test_linear_keeps_leading_dimensions(variant_name):
    fmt = formats.get("q4_0")
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(24, 64, generator=gen)
    x = torch.randn(2, 5, 64, generator=gen)
    y = linear(x, fmt.encode(w), fmt, variant_name)
    assert y.shape == (2, 5, 24) and y.dtype == torch.float32
    want = x.reshape(10, 64).double() @ fmt.roundtrip(w).double().T
    err = float((y.reshape(10, 24).double() - want).abs().max())
    bound = 0.05 * float(want.abs().max()) if variant_name == "int8_dot" else 1e-4 * float(want.abs().max())
    assert err <= bound


def test_linear_rejects_what_it_cannot_run():
    w = torch.randn(8, 64)
    turbo4 = formats.get("turbo4:group=64")
    with pytest.raises(FormatError, match="fused_fma does not support weights in turbo4:group=64"):
        linear(torch.randn(1, 64), turbo4.encode(w), turbo4, "fused_fma")
    turbo3 = formats.get("turbo3:group=64")
    with pytest.raises(FormatError, match="int8_dot does not support .*supports q8_0, q4_0, q4_1"):
        linear(torch.randn(1, 64), turbo3.encode(w), turbo3, "int8_dot")
    q4 = formats.get("q4_0")
    with pytest.raises(ValueError, match="unknown numba matmul variant 'dp4a'"):
        linear(torch.randn(1, 64), q4.encode(w), q4, "dp4a")
    with pytest.raises(FormatError, match=r"activations of shape \(1, 32\) do not match weights \[n=8, k=64\]"):
        linear(torch.randn(1, 32), q4.encode(w), q4, "fused_fma")
    with pytest.raises(FormatError, match="packed as q8_0"):
        linear(torch.randn(1, 64), formats.get("q8_0").encode(w), q4, "fused_fma")


def test_bad_shapes_and_formats_are_clear_errors():
    v = registry.find_variant("gemv", "q4_0", "numba", "fused_fma")
    with pytest.raises(UserError, match="k=100 do not fit q4_0.*multiple of its block size 32"):
        v.build(Case.make("gemv", "q4_0", m=1, n=8, k=100))
    op = registry.get_op("gemv")
    with pytest.raises(UserError, match="give the format a group, e.g. turbo3:group=64"):
        op.default_cases("turbo3")
    with pytest.raises(FormatError, match="unknown format 'q5_9'"):
        op.default_cases("q5_9")


def test_traffic_model_and_default_cases():
    op = registry.get_op("gemv")
    case = Case.make("gemv", "q4_0", m=1, n=4096, k=4096)
    assert op.bytes(case) == 4096 * 4096 * 18 // 32 + 4 * (4096 + 4096)
    assert op.flops(case) == 2 * 4096 * 4096 + 2 * 4096 * 4096  # FMAs + q4_0's 2 decode FLOPs per weight
    shapes = {(c.n, c.k) for c in op.default_cases("q4_0")}
    assert {(1536, 576), (576, 1536), (4096, 4096), (11008, 4096), (4096, 11008)} <= shapes
    assert {c.m for c in op.default_cases("q4_0")} == {1}
    assert {c.m for c in registry.get_op("gemm").default_cases("q4_0")} == {512}
    assert {(c.n, c.k) for c in op.default_cases("turbo3_tcq:group=64")} == {(1536, 576), (576, 1536)}
