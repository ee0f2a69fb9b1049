"""torch's int4 weight kernels as gemv / gemm variants of q4_0 (kernels/matmul/torch_int4*.py): the
CPU form against the op's check at the model's shapes, the layout shared with the CUDA form, the
formats left out, the CUDA form's availability here, and the CLI."""
import json
import re

import pytest
import torch

from quantbench.harness.cli import main
from quantbench.kernels import formats
from quantbench.kernels.matmul import torch_int4_layout as layout
from quantbench.kernels.matmul.spec import QuantizedActivations, packed_weights
from quantbench.kernels.registry import Case, Unavailable, find_variant, get_op, variants

NAMES = {"int4pack", "int4pack_cuda"}


@pytest.mark.parametrize("op, m, n, k", [
    ("gemv", 1, 576, 576), ("gemv", 1, 1536, 576), ("gemv", 1, 576, 1536), ("gemv", 1, 4096, 4096),
    ("gemm", 8, 1536, 576), ("gemm", 32, 576, 1536),
])
def test_cpu_form_passes_the_ops_check(op, m, n, k):
    case = Case.make(op, "q4_0", m=m, n=n, k=k)
    fn = find_variant(op, "q4_0", "torch", "int4pack").build(case)
    get_op(op).check(case, fn(), get_op(op).reference(case))


def test_torchs_weights_equal_the_q4_0_decode():
    """Identity activations give torch's dequantized weights, each alone in its sum."""
    n, k = 32, 64
    _, packed = packed_weights(Case.make("gemv", "q4_0", m=1, n=n, k=k))
    weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(layout.codes(packed), 1)
    scale_zero = layout.scales_and_zeros(packed, torch.float32)
    got = torch.ops.aten._weight_int4pack_mm_for_cpu(torch.eye(k), weight, layout.GROUP, scale_zero).T
    assert torch.equal(got, formats.get("q4_0").decode(packed))


def test_scales_and_zeros_are_group_major_pairs_in_the_dtype():
    _, packed = packed_weights(Case.make("gemv", "q4_0", m=1, n=16, k=96))
    pairs = layout.scales_and_zeros(packed, torch.bfloat16)
    assert pairs.shape == (3, 16, 2) and pairs.dtype == torch.bfloat16 and pairs.is_contiguous()
    assert torch.equal(pairs[..., 0], packed["d"].to(torch.bfloat16).T)
    assert not pairs[..., 1].any()


def test_cuda_nibbles_hold_even_values_high_and_odd_values_low():
    codes = torch.randint(0, 16, (8, 64), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    packed = layout.cuda_nibbles(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (8, 32)
    assert torch.equal((packed >> 4).int(), codes[:, 0::2]) and torch.equal((packed & 15).int(), codes[:, 1::2])


def test_inner_k_tiles_is_the_most_that_divide_k():
    assert [layout.inner_k_tiles(k) for k in (576, 1536, 4096, 96)] == [4, 8, 8, 2]


def test_only_q4_0_is_served():
    served = {spec for spec in formats.names()
              if any(v.name in NAMES for v in variants(op="gemv", format=spec, backend="torch"))}
    assert served == {"q4_0"}
    assert not [v for v in variants(format="q4_1") if v.name in NAMES]


def test_a_row_count_torch_cannot_pack_says_why():
    case = Case.make("gemv", "q4_0", m=1, n=24, k=64)
    with pytest.raises(Unavailable, match="gemv/torch/int4pack: it needs n a multiple of 16, the case has n=24"):
        find_variant("gemv", "q4_0", "torch", "int4pack").build(case)


@pytest.mark.cpu_only
def test_cuda_form_is_unavailable_without_a_gpu():
    case = Case.make("gemm", "q4_0", m=8, n=64, k=64)
    for op in ("gemv", "gemm"):
        v = find_variant(op, "q4_0", "torch", "int4pack_cuda")
        assert v.availability() == "no CUDA device"
        with pytest.raises(Unavailable, match=re.escape(f"{op}/torch/int4pack_cuda: unavailable: no CUDA device")):
            v.build(case)


def test_bench_shows_the_variant(capsys):
    code = main(["bench", "--op", "gemv", "--format", "q4_0", "--backend", "torch", "--shape", "m=1,n=576,k=576",
                 "--budget", "0.2", "--no-store", "-o", "json"])
    assert code == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["int4pack"]["status"] == "ok" and rows["int4pack"]["gbps"] > 0
    if not torch.cuda.is_available():
        assert rows["int4pack_cuda"]["status"] == "unavailable: no CUDA device"


def test_the_bfloat16_roundings_are_what_the_check_allows_beyond_float32():
    """torch's bfloat16 result fails the float32 tolerance at the model's width, and passes once its
    two declared bfloat16 roundings are added: the allowance is needed and is not unbounded."""
    case = Case.make("gemv", "q4_0", m=1, n=576, k=576)
    op = get_op("gemv")
    out = find_variant("gemv", "q4_0", "torch", "int4pack").build(case)()
    assert out.roundings == ((torch.bfloat16, 2),)
    op.check(case, out, op.reference(case))
    with pytest.raises(AssertionError, match="exceeds tolerance"):
        op.check(case, QuantizedActivations(out.y, "bf16"), op.reference(case))
    noisy = QuantizedActivations(out.y + 0.5, "bf16", out.roundings)  # far beyond two bfloat16 roundings
    with pytest.raises(AssertionError, match="exceeds tolerance"):
        op.check(case, noisy, op.reference(case))
