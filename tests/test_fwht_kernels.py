"""Every registered `fwht` variant against the references: bit-identical to the float32 torch
butterflies of kernels/formats/rotation.py (same stages, same order), and within the op's own tolerance of
its float64 reference. Triton runs in its interpreter, on small shapes."""
import numpy as np
import pytest
import torch
from numba import njit
from numba.core.errors import TypingError

from quantbench.kernels.formats import FormatError
from quantbench.kernels.formats.rotation import fwht
from quantbench.kernels.fwht.numba_row import MAX_WIDTH, unrotate, unrotate_row
from quantbench.kernels.registry import OPS, Case, Unavailable, variants


def kernel_variants():
    found = [v for v in variants(op="fwht", format="f32") if (v.backend, v.name) != ("torch", "reference")]
    return [v for v in found if v.availability() is None]


def test_numba_and_triton_variants_are_registered_and_available_here():
    keys = {(v.backend, v.name) for v in kernel_variants()}
    assert {("numba", "parallel"), ("numba", "registers"), ("triton", "butterfly")} <= keys


def built(variant, case, dim):
    """The variant's kernel, or None where numba/registers declines a row wider than its registers."""
    if (variant.backend, variant.name) == ("numba", "registers") and dim > MAX_WIDTH:
        with pytest.raises(Unavailable, match=f"a row of {dim} values"):
            variant.build(case)
        return None
    return variant.build(case)


@pytest.mark.parametrize("rows, dim", [(37, 16), (37, 32), (300, 64), (9, 128), (5, 256), (3, 1024)])
def test_variants_equal_the_torch_butterflies(rows, dim):
    case = Case.make("fwht", "f32", rows=rows, dim=dim, seed=2)
    x = case.inputs()["x"]
    for v in kernel_variants():
        fn = built(v, case, dim)
        if fn is None:
            continue
        out = fn().cpu()
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


@njit
def _unrotate_rows(y, width, signs, rotate):
    scale = np.float32(1.0 / np.sqrt(width))
    done = True
    for r in range(y.shape[0]):
        done &= unrotate(y, r * width, width, scale, signs, rotate)
    return done


@pytest.mark.parametrize("width", [16, 32, 64, 128, 256])
def test_unrotate_row_is_the_reference_inverse_rotation_bit_for_bit(width):
    """signs * FWHT(y) / sqrt(width) in registers, and signs * y alone without the rotation."""
    gen = torch.Generator().manual_seed(width)
    y = torch.randn(7, width, generator=gen)
    signs = torch.where(torch.rand(width, generator=gen) < 0.5, -1.0, 1.0)
    rotated, plain = y.numpy().copy(), y.numpy().copy()
    assert _unrotate_rows(rotated, width, signs.numpy(), True)
    assert torch.equal(torch.from_numpy(rotated), fwht(y) * signs)
    assert _unrotate_rows(plain, width, signs.numpy(), False)
    assert torch.equal(torch.from_numpy(plain), y * signs)


def test_unrotate_declines_other_widths_and_unrotate_row_needs_a_constant_one():
    y = np.ones((2, 512), np.float32)
    assert not _unrotate_rows(y, 512, np.ones(512, np.float32), True)
    assert (y == 1.0).all()

    @njit
    def runtime_width(y, width):
        unrotate_row(y, 0, width, np.float32(1.0), np.ones(64, np.float32), True)

    with pytest.raises(TypingError, match="width must be a constant power of two"):
        runtime_width(np.ones(64, np.float32), 64)

    @njit
    def too_narrow(y):
        unrotate_row(y, 0, 8, np.float32(1.0), np.ones(8, np.float32), True)

    with pytest.raises(TypingError, match="width must be a constant power of two"):
        too_narrow(np.ones(8, np.float32))
