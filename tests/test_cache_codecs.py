"""Every KV-cache fast codec (kernels/codecs/cache_codecs.py) writes the bytes and reads the values
of its format's torch code, bit for bit, through the model's cache stores."""
from __future__ import annotations

import pytest
import torch

from quantbench.harness.model.kv_cache import KVStore, cache_problem
from quantbench.kernels import formats
from quantbench.kernels.codecs.cache_codecs import PARALLEL_MIN_ROWS, fast_codec
from quantbench.kernels.formats import FormatError

DIM = 64
OPTIONED = ["q4_0_rot:signs=0", "turbo3:group=32", "turbo3:rotate=0", "turbo2:norm_correction=0", "q8_0_rot:group=32",
            "turbo3_tcq:encoder=greedy", "turbo2_tcq:norm_correction=0"]


def _served() -> list[str]:
    specs = [n for n in formats.names() if not cache_problem(formats.get(n), DIM)] + OPTIONED
    return [s for s in specs if fast_codec(formats.get(s), DIM, "cpu") is not None]


SERVED = _served()


def test_the_cache_formats_have_fast_codecs():
    for name in ("q8_0", "q4_0", "q4_1", "q8_0_rot", "q4_0_rot", "turbo2", "turbo3", "turbo4", "turbo3_tcq"):
        assert name in SERVED, name


def _stores(spec: str):
    fmt = formats.get(spec)
    return (KVStore(fmt, 24, 1, 3, DIM, "cpu", torch.float32, fast=True),
            KVStore(fmt, 24, 1, 3, DIM, "cpu", torch.float32, fast=False))


@pytest.mark.parametrize("spec", SERVED)
def test_fast_codec_matches_the_torch_code(spec):
    fast, reference = _stores(spec)
    assert fast.codec is not None and reference.codec is None
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(20, 1, 3, DIM, generator=gen) * 3
    x[4] = 0.0  # an all-zero position
    x[5, 0, 1, :5] = 40.0  # an outlier
    for store in (fast, reference):
        store.write(x[:13], 0)  # a prefill chunk, then single tokens
        for pos in range(13, 20):
            store.write(x[pos:pos + 1], pos)
    for name in reference.fields:
        assert torch.equal(fast.fields[name].view(torch.uint8), reference.fields[name].view(torch.uint8)), name
    assert torch.equal(fast.read(20, torch.float32), reference.read(20, torch.float32))
    assert fast.read(17, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("spec", ["q4_1", "q4_0_rot", "turbo3", "turbo2_tcq"])
def test_fast_codec_matches_on_all_threads(spec):
    """A chunk of more than PARALLEL_MIN_ROWS rows runs the kernels on every numba thread."""
    fmt = formats.get(spec)
    fast, reference = (KVStore(fmt, 120, 1, 3, DIM, "cpu", torch.float32, fast=f) for f in (True, False))
    assert 120 * 3 >= PARALLEL_MIN_ROWS
    x = torch.randn(120, 1, 3, DIM, generator=torch.Generator().manual_seed(3))
    for store in (fast, reference):
        store.write(x, 0)
    for name in reference.fields:
        assert torch.equal(fast.fields[name].view(torch.uint8), reference.fields[name].view(torch.uint8)), name
    assert torch.equal(fast.read(120, torch.float32), reference.read(120, torch.float32))


@pytest.mark.parametrize("spec", ["q8_0", "turbo3", "turbo3_tcq"])
def test_fast_codec_refuses_an_overflowing_scale_as_the_torch_code(spec):
    fast, reference = _stores(spec)
    x = torch.full((1, 1, 3, DIM), 1e9)
    for store in (fast, reference):
        with pytest.raises(FormatError, match="float16|fp16"):
            store.write(x, 0)
