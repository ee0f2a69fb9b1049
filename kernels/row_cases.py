"""Cases over the rows of a KV-shaped matrix, shared by the ops that transform rows
(quantize, dequantize, fwht): seeded N(0, 1) inputs and the float bytes of one side."""
from __future__ import annotations

import torch

from quantbench.kernels.registry import Case

ROW_DIMS = ("rows", "dim")
KV_SHAPES = (  # (rows, dim): the embedded model's KV rows (3 heads x 4096 tokens, head_dim 64), and head_dim 128
    (3 * 4096, 64),
    (8 * 1024, 128),
)


def gaussian_rows(case: Case) -> dict[str, torch.Tensor]:
    x = torch.randn(case.rows, case.dim, generator=case.generator(), dtype=torch.float32)
    return {"x": x.to(case.device)}


def float_bytes(case: Case) -> int:
    return case.rows * case.dim * torch.tensor([], dtype=case.torch_dtype).element_size()


def kv_cases(op: str):
    def cases(fmt: str) -> list[Case]:
        return [Case.make(op, fmt, rows=r, dim=d) for r, d in KV_SHAPES]
    return cases


def check_row_length(case: Case) -> None:
    """The case's format can hold rows of its length (FormatError naming both otherwise)."""
    case.format_obj.check_dim(case.dim)
