"""llama.cpp's k-quants (q2_k .. q6_k) and q5_0 / q5_1 byte for byte.

Encoding against llama.cpp's own reference quantizers: fixtures/kquant_reference.npz holds seeded
inputs (edge blocks first) and the bytes ggml_quantize_chunk wrote for them (ggml 0.25.3; made by
fixtures/make_kquant_fixtures.py, which needs a llama.cpp build the tests do not). Decoding against
the `gguf` package's independent dequantizers; q5_0 / q5_1 encoding against its quantizers too.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from quantbench.harness.model.kv_cache import cache_problem
from quantbench.kernels import formats
from quantbench.kernels.codecs.blocks_numba import f16_table
from quantbench.kernels.codecs.kquant_numba import DEQUANTIZE, LANES, kernel_arrays
from quantbench.kernels.formats import FormatError

FIXTURES = Path(__file__).parent / "fixtures" / "kquant_reference.npz"
K_QUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
QTYPES = {name: getattr(GGMLQuantizationType, name.upper()) for name in (*K_QUANTS, "q5_0", "q5_1")}
BITS = {"q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "q5_0": 5.5, "q5_1": 6.0}


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def block_rows(name: str, data: bytes) -> np.ndarray:
    fmt = formats.get(name)
    return np.frombuffer(data, np.uint8).reshape(-1, fmt.struct.block_bytes)


def test_fixtures_name_their_source(reference):
    assert "ggml 0.25.3" in str(reference["source"])
    assert reference["inputs"].dtype == np.float32 and reference["inputs"].shape[1] == 512


@pytest.mark.parametrize("name", list(QTYPES))
def test_encoding_is_llama_cpps_byte_for_byte(reference, name):
    fmt = formats.get(name)
    ours = block_rows(name, fmt.to_gguf_bytes(fmt.encode(torch.from_numpy(reference["inputs"]))))
    theirs = block_rows(name, reference[name].tobytes())
    assert ours.shape == theirs.shape
    differing = np.nonzero((ours != theirs).any(axis=1))[0]
    assert differing.size == 0, f"{name}: {differing.size} of {len(theirs)} blocks differ, first {differing[:5]}"


@pytest.mark.parametrize("name", list(QTYPES))
def test_decoding_matches_gguf(reference, name):
    fmt = formats.get(name)
    shape = reference["inputs"].shape
    packed = fmt.from_gguf_bytes(reference[name].tobytes(), shape)
    expected = gguf_dequantize(block_rows(name, reference[name].tobytes()), QTYPES[name]).reshape(shape)
    assert np.array_equal(fmt.decode(packed).numpy(), expected)
    assert fmt.to_gguf_bytes(packed) == reference[name].tobytes()


@pytest.mark.parametrize("name", ["q5_0", "q5_1"])
def test_q5_blocks_match_ggufs_quantizer(name):
    g = torch.Generator().manual_seed(3)
    for x in (torch.randn(6, 256, generator=g), torch.rand(5, 96, generator=g) * 1e-3, torch.zeros(2, 32)):
        fmt = formats.get(name)
        assert fmt.to_gguf_bytes(fmt.encode(x)) == gguf_quantize(x.numpy(), QTYPES[name]).tobytes()


@pytest.mark.parametrize("name", list(QTYPES))
def test_bits_per_value_are_exact(name):
    fmt = formats.get(name)
    assert fmt.bits_per_value_for(1536) == BITS[name]
    packed = fmt.encode(torch.randn(3, 1536, generator=torch.Generator().manual_seed(0)))
    assert packed.nbytes * 8 == BITS[name] * 3 * 1536 == fmt.bytes_for(3, 1536) * 8


@pytest.mark.parametrize("name", K_QUANTS)
def test_rows_not_a_multiple_of_256_are_refused(name):
    fmt = formats.get(name)
    with pytest.raises(FormatError, match=f"{name}: last dimension 576 is not a multiple of 256"):
        fmt.encode(torch.randn(2, 576))
    with pytest.raises(FormatError, match="not a multiple of 256"):
        fmt.bits_per_value_for(64)
    with pytest.raises(FormatError, match="not a multiple of 256"):
        fmt.from_gguf_bytes(b"", (1, 128))
    with pytest.raises(FormatError, match="do not hold shape"):
        fmt.from_gguf_bytes(b"\0" * 10, (1, 256))


@pytest.mark.parametrize("name", K_QUANTS)
def test_the_kv_cache_refuses_k_quants_with_the_reason(name):
    assert "not a multiple of 256" in cache_problem(formats.get(name), 64)


@pytest.mark.parametrize("name", K_QUANTS)
def test_values_past_float16_are_refused(name):
    with pytest.raises(FormatError, match="overflows float16"):
        formats.get(name).encode(torch.full((1, 256), 1e10) * torch.linspace(-1, 1, 256))


@pytest.mark.parametrize("name", K_QUANTS)
def test_scale_underflow_is_counted(name):
    g = torch.Generator().manual_seed(5)
    x = torch.cat((torch.randn(1, 256, generator=g) * 1e-12, torch.randn(1, 256, generator=g), torch.zeros(1, 256)))
    assert formats.get(name).encode(x).scale_underflow == 1


@pytest.mark.parametrize("name", K_QUANTS)
def test_numba_dequantize_is_bit_identical_to_the_torch_decoder(reference, name):
    fmt = formats.get(name)
    x = torch.from_numpy(reference["inputs"])
    packed = fmt.encode(x)
    out = np.empty((x.numel() // 256, 256), np.float32)
    DEQUANTIZE[name](*kernel_arrays(fmt, packed), out, f16_table(), LANES)
    assert np.array_equal(out.reshape(x.shape), fmt.decode(packed).numpy())


def test_k_quants_are_weight_formats_for_the_ops():
    from quantbench.kernels.attention.spec import cache_formats
    from quantbench.kernels.matmul.spec import weight_specs
    from quantbench.kernels.registry import get_op

    for name in K_QUANTS:
        assert name in weight_specs() and name not in cache_formats()
        assert [dict(c.dims) for c in get_op("dequantize").default_cases(name)] == [{"rows": 576, "dim": 1536}]
        assert 576 not in {dict(c.dims)["k"] for c in get_op("gemv").default_cases(name)}
