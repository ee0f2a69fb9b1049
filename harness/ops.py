"""Op declarations: seeded inputs, reference, and the traffic model (bytes and FLOPs) per case.

Bytes count what a kernel must move at minimum: the packed bytes of the format (side data
included) plus the float bytes on the other side. FLOPs count the arithmetic the format's
decode or encode needs per value (`Format.encode_flops` / `decode_flops`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from quantbench.kernels import formats
from quantbench.kernels.rotation import fwht

from .registry import Case, Op, register_op

KV_SHAPES = (  # (rows, dim): the embedded model's KV rows (3 heads x 4096 tokens, head_dim 64), and head_dim 128
    (3 * 4096, 64),
    (8 * 1024, 128),
)


def _gaussian(case: Case) -> dict[str, torch.Tensor]:
    x = torch.randn(case.rows, case.dim, generator=case.generator(), dtype=torch.float32)
    return {"x": x.to(case.device)}


def _float_bytes(case: Case) -> int:
    return case.rows * case.dim * torch.tensor([], dtype=case.torch_dtype).element_size()


def _packed_bytes(case: Case) -> int:
    return case.format_obj.bytes_for(case.rows, case.dim)


def check_packed_equal(case: Case, out, ref) -> None:
    """Encoders are bit-exact: every packed field equal to the reference's."""
    assert out.shape == ref.shape, f"shape {out.shape} != reference {ref.shape}"
    assert set(out.fields) == set(ref.fields), f"fields {sorted(out.fields)} != reference {sorted(ref.fields)}"
    for name, want in ref.fields.items():
        got = out.fields[name].cpu()
        assert got.dtype == want.dtype, f"field {name}: dtype {got.dtype} != reference {want.dtype}"
        assert got.shape == want.shape, f"field {name}: shape {tuple(got.shape)} != reference {tuple(want.shape)}"
        bad = (got.view(torch.uint8) if got.is_floating_point() else got) != \
              (want.view(torch.uint8) if want.is_floating_point() else want)
        assert not bool(bad.any()), f"field {name}: {int(bad.sum())} of {bad.numel()} entries differ"


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


def _decode_steps(case: Case) -> int:
    """Roundings in a decode: scale multiply, plus the inverse rotation's butterflies."""
    return 4 + int(case.format_obj.rotation_flops(case.dim))


def _quantizable_formats() -> list[str]:
    return [n for n in formats.names() if formats.get(n).family != "float"]


def _kv_cases(op: str):
    def cases(fmt: str) -> list[Case]:
        return [Case.make(op, fmt, rows=r, dim=d) for r, d in KV_SHAPES]
    return cases


register_op(Op(
    name="quantize",
    description="encode float rows into the format",
    make_inputs=_gaussian,
    reference=lambda case: case.format_obj.encode(_gaussian(case)["x"].cpu()),
    bytes=lambda case: _float_bytes(case) + _packed_bytes(case),
    flops=lambda case: case.rows * case.dim * case.format_obj.encode_flops(case.dim),
    default_cases=_kv_cases("quantize"),
    formats=_quantizable_formats,
    check=check_packed_equal,
))

register_op(Op(
    name="dequantize",
    description="decode packed rows to floats",
    make_inputs=_gaussian,
    reference=lambda case: case.format_obj.roundtrip(_gaussian(case)["x"].cpu()).to(case.torch_dtype),
    bytes=lambda case: _packed_bytes(case) + _float_bytes(case),
    flops=lambda case: case.rows * case.dim * case.format_obj.decode_flops(case.dim),
    default_cases=_kv_cases("dequantize"),
    formats=_quantizable_formats,
    check=check_close(_decode_steps),
))

register_op(Op(
    name="fwht",
    description="orthonormal fast Walsh-Hadamard transform of each row",
    make_inputs=_gaussian,
    reference=lambda case: fwht(_gaussian(case)["x"].cpu().double()).float(),
    bytes=lambda case: 2 * _float_bytes(case),
    flops=lambda case: case.rows * case.dim * (int(math.log2(case.dim)) + 1),
    default_cases=_kv_cases("fwht"),
    formats=lambda: ["f32"],
    check=check_close(lambda case: int(math.log2(case.dim)) + 2),
))

from . import ops_tcq  # noqa: E402,F401
from . import ops_attention  # noqa: E402,F401
from . import ops_weights  # noqa: E402,F401
