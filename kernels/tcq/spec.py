"""The op `tcq_encode`: the trellis search of the TCQ formats, alone.

Input: the groups exactly as the trellis sees them (normalized, rotated, unit variance: the
format's `trellis_inputs`), float32 [groups, g]. Output: `EncodedPaths`, the encoder's name and
the packed bit streams uint8 [groups, g*k/8]. Variants are named by encoder (`viterbi`,
`greedy`) and checked against the numpy reference of the same encoder: equal streams, or for
Viterbi a path of equal distortion (float ties may pick another of several optimal paths).
Bytes: the float32 groups read plus the streams written. FLOPs: the format's search per value
(Viterbi: two passes over 2**L states; the same count is used for greedy, whose speedup then
reads as the work it skips).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import trellis
from quantbench.kernels.registry import Case, Op, register_op
from quantbench.kernels.row_cases import ROW_DIMS, check_row_length


def is_tcq(fmt) -> bool:
    """The formats the trellis kernels serve: every trellis-coded format."""
    return fmt.family == "trellis"


def tcq_formats() -> list[str]:
    return [name for name in formats.names() if is_tcq(formats.get(name))]


CASES = (  # (rows, dim): one 512-token chunk of one layer's K (3 KV heads, head_dim 64); head_dim 128
    (3 * 512, 64),
    (2 * 512, 128),
)
RELATIVE_TIE = 1e-5  # float32 path costs that agree this closely are ties


@dataclass
class EncodedPaths:
    encoder: str
    codes: object  # uint8 [groups, g*k/8], torch tensor or numpy array


def trellis_inputs(case: Case) -> torch.Tensor:
    x = torch.randn(case.rows, case.dim, generator=case.generator(), dtype=torch.float32)
    return case.format_obj.trellis_inputs(x)[0]


def _inputs(case: Case) -> dict[str, torch.Tensor]:
    return {"v": trellis_inputs(case).to(case.device)}


def reference_codes(case: Case, encoder: str) -> np.ndarray:
    fmt = case.format_obj
    v = trellis_inputs(case).numpy()
    return trellis.pack_stream(trellis.encode(v, fmt.table, fmt.trellis, encoder), fmt.bits)


@functools.lru_cache(maxsize=4)
def _reference(case: Case) -> dict[str, np.ndarray]:
    return {encoder: reference_codes(case, encoder) for encoder in trellis.ENCODERS}


def _as_numpy(codes) -> np.ndarray:
    return codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)


def check_paths(case: Case, out: EncodedPaths, ref: dict[str, np.ndarray]) -> None:
    assert isinstance(out, EncodedPaths), f"expected EncodedPaths, got {type(out).__name__}"
    want = ref[out.encoder]
    got = _as_numpy(out.codes)
    assert got.dtype == np.uint8 and got.shape == want.shape, \
        f"codes {got.dtype} {got.shape} != reference uint8 {want.shape}"
    differ = (got != want).any(axis=1)
    if not differ.any():
        return
    assert out.encoder == "viterbi", f"{int(differ.sum())} of {len(differ)} greedy paths differ from the reference"
    fmt = case.format_obj
    v = trellis_inputs(case).numpy()[differ]
    g = v.shape[1]
    cost = [trellis.path_distortion(v, trellis.stream_states(c[differ], fmt.trellis, g), fmt.table)
            for c in (got, want)]
    worse = cost[0] > cost[1] * (1 + RELATIVE_TIE)
    assert not worse.any(), (f"{int(worse.sum())} of {len(differ)} Viterbi paths cost more than the reference's "
                             f"(worst {float((cost[0] / cost[1])[worse].max()):.6f}x)")


def _bytes(case: Case) -> int:
    return case.rows * case.dim * 4 + case.rows * case.dim * case.format_obj.bits // 8


def _flops(case: Case) -> float:
    return case.rows * case.dim * case.format_obj.encode_flops_per_value


def _cases(fmt: str) -> list[Case]:
    return [Case.make("tcq_encode", fmt, rows=r, dim=d) for r, d in CASES]


register_op(Op(
    name="tcq_encode",
    description="trellis search (Viterbi / greedy) of the TCQ formats on rotated unit-variance groups",
    make_inputs=_inputs,
    reference=_reference,
    bytes=_bytes,
    flops=_flops,
    default_cases=_cases,
    baseline=("numpy", "viterbi"),
    formats=tcq_formats,
    check=check_paths,
    dims=ROW_DIMS,
    validate=check_row_length,
))
