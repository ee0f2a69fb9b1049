"""Formats never lose the signal silently: float formats refuse values they would turn into inf,
block scales that underflow float16 are counted (llama.cpp's bytes, but not silence), 0 rows
encode to 0 rows, and the numba encoders raise on side data that overflows as the torch ones do."""
import pytest
import torch

from quantbench.harness.model.kv_cache import KVCache
from quantbench.harness.model.kv_policy import parse_kv_policy
from quantbench.kernels import formats, registry
from quantbench.kernels.formats import FormatError
from quantbench.kernels.registry import Case, find_variant


@pytest.mark.parametrize("spec, value", [("f16", 65520.0), ("bf16", 6.8e38), ("f32", 1e300)])
def test_float_formats_refuse_values_they_cannot_hold(spec, value):
    x = torch.full((1, 32), value, dtype=torch.float64)
    with pytest.raises(FormatError, match=f"{spec}: values too large"):
        formats.get(spec).encode(x)


@pytest.mark.parametrize("spec, scale", [("q8_0", 1e-6), ("q8_0_rot", 1e-6), ("q4_0", 1e-7), ("q4_1", 1e-7)])
def test_underflowed_block_scales_are_counted(spec, scale):
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * scale
    assert formats.get(spec).encode(x).scale_underflow == 8  # every block of 4 rows x 2 blocks
    assert formats.get(spec).encode(x / scale).scale_underflow == 0
    assert formats.get(spec).encode(torch.zeros(4, 64)).scale_underflow == 0  # exact at d = 0


def test_the_numba_encoders_count_underflow_too():
    case = Case.make("quantize", "q8_0", rows=4, dim=64)
    op = registry.get_op("quantize")
    tiny = {"x": torch.randn(4, 64) * 1e-6}
    original = op.make_inputs
    op.make_inputs = lambda c: tiny
    try:
        packed = find_variant("quantize", "q8_0", "numba", "parallel").build(case)()
    finally:
        op.make_inputs = original
    assert packed.scale_underflow == 8


def test_the_kv_cache_counts_underflowed_blocks():
    from quantbench.harness.model import ModelConfig

    config = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=1, head_dim=64, dim=128, hidden_dim=256,
                         vocab_size=10, max_seq_len=8)
    cache = KVCache(config, 1, 8, parse_kv_policy("q8_0", n_layers=1))
    k_store, v_store = cache.layers[0]
    k_store.write(torch.randn(4, 1, 1, 64) * 1e-6, 0)
    v_store.write(torch.randn(4, 1, 1, 64), 0)
    assert cache.scale_underflow(4) == 4 * 2  # 4 positions x 2 blocks of K; V is fine


@pytest.mark.parametrize("spec", ["turbo2", "turbo3", "turbo4", "turbo4_mse", "q4_0", "f16", "turbo3_tcq"])
def test_zero_rows_encode_to_zero_rows(spec):
    fmt = formats.get(spec)
    assert fmt.decode(fmt.encode(torch.zeros(0, 64))).shape == (0, 64)


@pytest.mark.parametrize("spec, value", [("q8_0", 1e30), ("q4_0_rot", 1e30), ("turbo3", 65000.0)])
def test_numba_encoders_raise_on_overflowing_side_data_like_torch(spec, value):
    x = torch.full((2, 64), value)
    x[:, ::2] *= -1
    with pytest.raises(FormatError, match="overflow|exceeds the fp16 range"):
        formats.get(spec).encode(x)
    op = registry.get_op("quantize")
    original = op.make_inputs
    op.make_inputs = lambda c: {"x": x}
    try:
        with pytest.raises(FormatError, match="overflows float16"):
            find_variant("quantize", spec, "numba", "parallel").build(Case.make("quantize", spec, rows=2, dim=64))
    finally:
        op.make_inputs = original
