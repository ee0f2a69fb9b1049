"""Cases over the rows of a KV-shaped matrix (or of a weight matrix, for formats whose blocks no KV
row holds), shared by the ops that transform rows (quantize, dequantize, fwht): seeded N(0, 1)
inputs and the float bytes of one side."""
from __future__ import annotations

import torch

from quantbench.kernels import formats
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


WEIGHT_ROW_SHAPES = (  # (rows, dim): weights [out, in], the embedded model's down projection (a KV case's size)
    (576, 1536),
)


def kv_cases(op: str):
    """The KV shapes the format can hold; a format that holds none of them (llama.cpp's k-quants:
    256-value super-blocks) is a weight format, and gets the weight rows instead."""
    def cases(spec: str) -> list[Case]:
        fmt = formats.get(spec)
        shapes = [s for s in KV_SHAPES if fmt.holds(s[1])] or [s for s in WEIGHT_ROW_SHAPES if fmt.holds(s[1])]
        return [Case.make(op, spec, rows=r, dim=d) for r, d in shapes or KV_SHAPES]
    return cases


def at_model_shape(case: Case) -> bool:
    """`quantbench run`'s filter: the embedded model's own KV rows, or the weight rows for a weight
    format (head_dim 128 stays in `bench` and the tracking suites)."""
    return (case.rows, case.dim) in (KV_SHAPES[0], *WEIGHT_ROW_SHAPES)


def check_row_length(case: Case) -> None:
    """The case's format can hold rows of its length (FormatError naming both otherwise)."""
    case.format_obj.check_dim(case.dim)
