"""Every registered `fwht` variant against the references: bit-identical to the float32 torch
butterflies of kernels/formats/rotation.py (same stages, same order), and within the op's own tolerance of
its float64 reference. Triton runs in its interpreter, on small shapes."""
import pytest
import torch

from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.registry import OPS, Case, variants


def kernel_variants():
    found = [v for v in variants(op="fwht", format="f32") if (v.backend, v.name) != ("torch", "reference")]
    return [v for v in found if v.availability() is None]


def test_numba_and_triton_variants_are_registered_and_available_here():
    keys = {(v.backend, v.name) for v in kernel_variants()}
    assert {("numba", "parallel"), ("triton", "butterfly")} <= keys


@pytest.mark.parametrize("rows, dim", [(37, 32), (300, 64), (9, 128), (5, 256), (3, 1024)])
def test_variants_equal_the_torch_butterflies(rows, dim):
    case = Case.make("fwht", "f32", rows=rows, dim=dim, seed=2)
    x = case.inputs()["x"]
    for v in kernel_variants():
        out = v.build(case)().cpu()
        assert torch.equal(out, fwht(x)), f"{v.backend}/{v.name}"
        OPS["fwht"].check(case, out, OPS["fwht"].reference(case))


def test_fwht_is_its_own_inverse_in_every_variant(monkeypatch):
    x = torch.randn(16, 128, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(OPS["fwht"], "make_inputs", lambda case: {"x": fwht(x).to(case.device)})
    case = Case.make("fwht", "f32", rows=16, dim=128)
    for v in kernel_variants():
        assert torch.allclose(v.build(case)().cpu(), x, atol=1e-5), f"{v.backend}/{v.name}"


def test_non_power_of_two_rows_are_refused():
    case = Case.make("fwht", "f32", rows=4, dim=96)
    for v in kernel_variants():
        with pytest.raises(FormatError, match="not a power of two"):
            v.build(case)
