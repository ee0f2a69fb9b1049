"""The ops `quantize` (float rows -> the format's packed fields) and `dequantize` (back to floats).

Bytes count what a kernel must move at minimum: the packed bytes of the format (side data
included) plus the float bytes on the other side. FLOPs count the arithmetic the format's
decode or encode needs per value (`Format.encode_flops` / `decode_flops`).
"""
from __future__ import annotations

from quantbench.kernels import formats
from quantbench.kernels.checks import check_close, check_packed_equal
from quantbench.kernels.registry import Case, Op, register_op
from quantbench.kernels.row_cases import (
    ROW_DIMS,
    at_model_shape,
    check_row_length,
    float_bytes,
    gaussian_rows,
    kv_cases,
)


def _packed_bytes(case: Case) -> int:
    return case.format_obj.bytes_for(case.rows, case.dim)


def _decode_steps(case: Case) -> int:
    """Roundings in a decode: scale multiply, plus the inverse rotation's butterflies."""
    return 4 + int(case.format_obj.rotation_flops(case.dim))


def _quantizable_formats() -> list[str]:
    return [n for n in formats.names() if formats.get(n).family != "float"]


register_op(Op(
    name="quantize",
    description="encode float rows into the format",
    make_inputs=gaussian_rows,
    reference=lambda case: case.format_obj.encode(gaussian_rows(case)["x"].cpu()),
    bytes=lambda case: float_bytes(case) + _packed_bytes(case),
    flops=lambda case: case.rows * case.dim * case.format_obj.encode_flops(case.dim),
    default_cases=kv_cases("quantize"),
    formats=_quantizable_formats,
    check=check_packed_equal,
    in_run=True,
    run_filter=at_model_shape,
    dims=ROW_DIMS,
    dtypes=("float32", "float16", "bfloat16"),
    validate=check_row_length,
))

register_op(Op(
    name="dequantize",
    description="decode packed rows to floats",
    make_inputs=gaussian_rows,
    reference=lambda case: case.format_obj.roundtrip(gaussian_rows(case)["x"].cpu()).to(case.torch_dtype),
    bytes=lambda case: _packed_bytes(case) + float_bytes(case),
    flops=lambda case: case.rows * case.dim * case.format_obj.decode_flops(case.dim),
    default_cases=kv_cases("dequantize"),
    formats=_quantizable_formats,
    check=check_close(_decode_steps),
    in_run=True,
    run_filter=at_model_shape,
    dims=ROW_DIMS,
    dtypes=("float32", "float16", "bfloat16"),
    validate=check_row_length,
))
