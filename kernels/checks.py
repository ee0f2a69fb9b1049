"""Checks shared by the ops' specs: bit-exact packed outputs, and float outputs within a tolerance
derived from the number of roundings the computation makes."""
from __future__ import annotations

from typing import Callable

import torch

from quantbench.kernels.registry import Case


def check_packed_equal(case: Case, out, ref) -> None:
    """Encoders are bit-exact: every packed field equal to the reference's."""
    assert out.shape == ref.shape, f"shape {out.shape} != reference {ref.shape}"
    assert set(out.fields) == set(ref.fields), f"fields {sorted(out.fields)} != reference {sorted(ref.fields)}"
    for name, want in ref.fields.items():
        got = out.fields[name].cpu()
        assert got.dtype == want.dtype, f"field {name}: dtype {got.dtype} != reference {want.dtype}"
        assert got.shape == want.shape, f"field {name}: shape {tuple(got.shape)} != reference {tuple(want.shape)}"
        bad = _bits(got) != _bits(want)
        assert not bool(bad.any()), f"field {name}: {int(bad.sum())} of {bad.numel()} entries differ"


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes (floats compared bit for bit, so -0.0 != 0.0 and NaN == NaN)."""
    return t.reshape(-1).view(torch.uint8) if t.is_floating_point() else t.reshape(-1)


def float_tolerance(dtype: torch.dtype, rounding_steps: int, scale: float) -> float:
    """Absolute tolerance for two float computations that each round `rounding_steps` times:
    both may be off by half an ulp per step, relative to the largest magnitude involved."""
    return 2 * rounding_steps * torch.finfo(dtype).eps * max(scale, torch.finfo(dtype).tiny)


def check_close(steps: Callable[[Case], int]):
    def check(case: Case, out, ref) -> None:
        out = out.cpu().double()
        ref = ref.cpu().double()
        assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
        tol = float_tolerance(case.torch_dtype, steps(case), float(ref.abs().max()))
        err = float((out - ref).abs().max())
        assert err <= tol, f"max abs error {err:.3g} exceeds tolerance {tol:.3g}"
    return check


