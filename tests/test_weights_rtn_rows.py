"""Row slices of quantized weights (a fused qkv tensor split by role) decode as the rows of the whole."""
import pytest
import torch

from quantbench.harness.weights.rtn import rtn_quantize
from quantbench.kernels import formats


@pytest.mark.parametrize("spec", ["q4_0", "nvfp4", "nvfp4:scale=row", "fp8_e4m3:scale=tensor", "mxfp4"])
def test_row_slices_decode_as_rows_of_the_whole_tensor(spec):
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(0))
    whole = rtn_quantize(w, formats.get(spec))
    part = whole.rows(4, 9)
    assert torch.equal(part.dequantized(), whole.dequantized()[4:9])
