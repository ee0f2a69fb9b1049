"""The op `fwht`: the orthonormal fast Walsh-Hadamard transform of each row (the rotation of the
rotated formats), float32 [rows, dim] -> float32 [rows, dim]; dim a power of two.

Reference: float64 butterflies. Bytes: the rows read and written. FLOPs: dim (log2 dim + 1) per
row (the butterflies and the normalization).
"""
from __future__ import annotations

import math

from quantbench.kernels.checks import check_close
from quantbench.kernels.errors import FormatError
from quantbench.kernels.formats.rotation import fwht, is_power_of_two
from quantbench.kernels.registry import Op, register_op
from quantbench.kernels.row_cases import ROW_DIMS, float_bytes, gaussian_rows, kv_cases


def _check_power_of_two(case) -> None:
    if not is_power_of_two(case.dim):
        raise FormatError(f"fwht: dim={case.dim} is not a power of two")


register_op(Op(
    name="fwht",
    description="orthonormal fast Walsh-Hadamard transform of each row",
    make_inputs=gaussian_rows,
    reference=lambda case: fwht(gaussian_rows(case)["x"].cpu().double()).float(),
    bytes=lambda case: 2 * float_bytes(case),
    flops=lambda case: case.rows * case.dim * (int(math.log2(case.dim)) + 1),
    default_cases=kv_cases("fwht"),
    formats=lambda: ["f32"],
    check=check_close(lambda case: int(math.log2(case.dim)) + 2),
    in_run=True,
    dims=ROW_DIMS,
    dtypes=("float32", "float16", "bfloat16"),
    validate=_check_power_of_two,
))
