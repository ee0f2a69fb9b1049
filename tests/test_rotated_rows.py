"""The row-at-a-time numba dequantize of turbo (no QJL) and TCQ (kernels/codecs/rotated_rows_numba.py)
against the torch decode, bit for bit, at every group width the formats take."""
import numpy as np
import pytest
import torch

from quantbench.kernels import formats
from quantbench.kernels.codecs.rotated_rows_numba import padded_codebook, tcq_rows, turbo_rows
from quantbench.kernels.registry import variants


def _half_bits(t):
    return t.reshape(-1).view(torch.int16).numpy().view(np.uint16)


@pytest.mark.parametrize("spec", ["turbo2", "turbo3", "turbo4_mse", "turbo2_tcq", "turbo3_tcq"])
@pytest.mark.parametrize("dim", [32, 64, 128, 256])
def test_rows_equal_the_torch_decode(spec, dim):
    fmt = formats.get(spec)
    g = fmt.group_for(dim)
    x = torch.randn(70, dim, generator=torch.Generator().manual_seed(dim)) * 3  # 70: a last, partial task
    x[3] = 0.0
    packed = fmt.encode(x)
    groups = x.numel() // g
    out = np.full((groups, g), np.nan, np.float32)
    signs, norms = fmt.sign_vector(g).numpy(), _half_bits(packed["norms"])
    if fmt.name.endswith("_tcq"):
        codes = packed["codes"].reshape(groups, -1).numpy()
        tcq_rows(codes, norms, fmt.trellis.k, fmt.levels(g), signs, fmt.rotate, out)
    else:
        codes = packed["codes"].reshape(groups, fmt.bits, g // 8).numpy()
        turbo_rows(codes, norms, padded_codebook(fmt.codebook(g).numpy()), signs, fmt.rotate, out)
    assert torch.equal(torch.from_numpy(out).reshape(x.shape), fmt.decode(packed))


def test_the_rows_variant_serves_turbo_without_qjl_and_tcq():
    served = {fmt for fmt in ("turbo2", "turbo3", "turbo4", "turbo4_mse", "turbo2_tcq", "turbo3_tcq", "q4_0")
              if any(v.name == "rows" for v in variants(op="dequantize", backend="numba", format=fmt))}
    assert served == {"turbo2", "turbo3", "turbo4_mse", "turbo2_tcq", "turbo3_tcq"}
