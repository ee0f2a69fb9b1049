"""turbo2_tcq / turbo3_tcq: exact bits, quality against Lloyd-Max, the decode of the encoder's
path, options and bad input; the tcq_encode op and the numba variants through the bench."""
import numpy as np
import pytest
import torch

from quantbench.harness.bench import run_bench, select
from quantbench.harness.format_quality import normalized_mse
from quantbench.harness.timing import TimingConfig
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError, trellis
from quantbench.kernels.formats.lloyd_max import gaussian_mse
from quantbench.kernels.registry import Case, find_variant, get_op
from quantbench.kernels.tcq.spec import EncodedPaths, check_paths, reference_codes

FAST = TimingConfig(budget_s=0.01, min_repeats=2, warmup=1)


def rows(n, dim, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spec,dim,bits", [
    ("turbo2_tcq", 64, 2 + 16 / 64), ("turbo3_tcq", 128, 3 + 16 / 128),
    ("turbo3_tcq:group=32", 128, 3 + 16 / 32), ("turbo2_tcq:group=64:L=6", 256, 2 + 16 / 64),
])
def test_bits_per_value_are_exact(spec, dim, bits):
    fmt = formats.get(spec)
    packed = fmt.encode(rows(6, dim))
    assert fmt.bits_per_value_for(dim) == bits
    assert packed.nbytes * 8 == bits * 6 * dim == fmt.bytes_for(6, dim) * 8
    assert packed["codes"].dtype == torch.uint8 and packed["norms"].dtype == torch.float16


@pytest.mark.parametrize("bits,limit", [(2, 0.078), (3, 0.0205)])
def test_trellis_beats_lloyd_max_at_the_same_bits(bits, limit):
    tcq = normalized_mse(f"turbo{bits}_tcq", rows=256, dim=128)
    assert tcq <= limit
    assert tcq < 0.7 * gaussian_mse(bits)
    assert tcq < 0.7 * normalized_mse(f"turbo{bits}", rows=256, dim=128)


def test_greedy_encoder_is_one_option_and_worse():
    viterbi = normalized_mse("turbo2_tcq:L=8", rows=64, dim=64)
    assert normalized_mse("turbo2_tcq:L=8:encoder=greedy", rows=64, dim=64) > 2 * viterbi


@pytest.mark.parametrize("spec", ["turbo2_tcq:L=8", "turbo3_tcq:L=6:code=hash", "turbo2_tcq:code=random:L=10"])
def test_decode_reproduces_the_encoders_path_values(spec):
    fmt = formats.get(spec + ":rotate=0:signs=0:norm_correction=0")
    x = rows(12, 64, seed=2)
    packed = fmt.encode(x)
    v, norm = fmt.trellis_inputs(x)
    path = trellis.encode(v.numpy(), fmt.table, fmt.trellis, "viterbi")
    expected = torch.from_numpy(fmt.levels(64)[path]) * norm.float().half().float()[:, None]
    assert torch.equal(fmt.decode(packed), expected)


def test_norm_correction_keeps_each_groups_norm():
    x = rows(16, 128, seed=4)
    kept = formats.get("turbo2_tcq:group=64:L=8").roundtrip(x).reshape(-1, 64).norm(dim=1)
    plain = formats.get("turbo2_tcq:group=64:L=8:norm_correction=0").roundtrip(x).reshape(-1, 64).norm(dim=1)
    want = x.reshape(-1, 64).norm(dim=1)
    assert torch.allclose(kept, want, rtol=1e-3)
    assert not torch.allclose(plain, want, rtol=1e-2)


def test_zero_rows_and_leading_dimensions():
    fmt = formats.get("turbo3_tcq:L=6")
    x = rows(2 * 3, 64).reshape(2, 3, 64)
    x[1, 2] = 0
    packed = fmt.encode(x)
    assert packed["codes"].shape == (2, 3, 24) and packed["norms"].shape == (2, 3, 1)
    y = fmt.decode(packed)
    assert y.shape == x.shape and torch.equal(y[1, 2], torch.zeros(64))


def test_specs_list_only_options_that_differ_from_the_defaults():
    assert formats.get("turbo2_tcq:L=9:code=trained").spec == "turbo2_tcq"
    assert formats.get("turbo2_tcq", L=12, code="hash").spec == "turbo2_tcq:L=12:code=hash"
    assert formats.get("turbo3_tcq").bits_per_value == 3 + 16 / 128


@pytest.mark.parametrize("spec,message", [
    ("turbo2_tcq:code=lattice", "unknown code"),
    ("turbo2_tcq:encoder=beam", "unknown encoder"),
    ("turbo2_tcq:L=17", "state bits L=17"),
    ("turbo3_tcq:L=3", "state bits L=3"),
    ("turbo2_tcq:L=13", "for L=13 use code=random or code=hash"),
    ("turbo2_tcq:group=48", "not a power of two"),
])
def test_bad_options_are_rejected(spec, message):
    with pytest.raises(FormatError, match=message):
        formats.get(spec)


def test_bad_input_is_rejected():
    fmt = formats.get("turbo2_tcq:group=64:L=6")
    with pytest.raises(FormatError, match="not a multiple of the group size 64"):
        fmt.encode(rows(2, 96))
    with pytest.raises(FormatError, match="NaN or Inf"):
        fmt.encode(torch.full((1, 64), float("nan")))
    with pytest.raises(FormatError, match="exceeds the fp16 range"):
        fmt.encode(torch.full((1, 64), 1e5))
    with pytest.raises(FormatError, match="power of two"):
        formats.get("turbo2_tcq:L=6").encode(rows(2, 96))


SMALL = {"tcq_encode": dict(rows=6, dim=64), "dequantize": dict(rows=6, dim=128), "quantize": dict(rows=6, dim=64)}


@pytest.mark.parametrize("op", ["tcq_encode", "dequantize", "quantize"])
@pytest.mark.parametrize("spec", ["turbo2_tcq:L=7", "turbo3_tcq:group=64:L=6"])
def test_cpu_variants_pass_the_bench_validation(op, spec):
    pairs = [(v, s) for v, s in select(op, [spec], ["torch", "numpy", "numba"])
             if (v.backend, v.name) == ("torch", "reference") or (v.formats is not None and v.supports("turbo2_tcq"))]
    assert {v.backend for v, _ in pairs} == ({"numpy", "numba"} if op == "tcq_encode" else
                                             {"torch", "numba"} if op == "dequantize" else {"torch"})
    results = run_bench(op, pairs, lambda s: [Case.make(op, s, **SMALL[op])], FAST, progress=False)
    assert [r.status for r in results] == ["ok"] * len(results)


def test_encode_check_rejects_wrong_and_worse_paths():
    case = Case.make("tcq_encode", "turbo2_tcq:L=6", rows=4, dim=64)
    ref = get_op("tcq_encode").reference(case)
    good = find_variant("tcq_encode", case.format, "numba", "viterbi").build(case)()
    check_paths(case, good, ref)
    with pytest.raises(AssertionError, match="greedy paths differ"):
        check_paths(case, EncodedPaths("greedy", ref["viterbi"]), ref)
    with pytest.raises(AssertionError, match="cost more than the reference"):
        check_paths(case, EncodedPaths("viterbi", ref["greedy"]), ref)
    assert np.array_equal(ref["viterbi"], reference_codes(case, "viterbi"))
