"""The weight-matmul ops `gemv` (decode: a few activation rows) and `gemm` (prefill: many rows).

A case has dims m, n, k: activations x float32 [m, k], weights W [n, k] (out, in) stored in the
case's format, quantized along k (the formats quantize along the last dimension, so the packed
weight is `fmt.encode(W)`), output y = x @ W^T float32 [m, n].

Inputs (seeded): x ~ N(0, 1); W ~ N(0, 1/k) (the usual init scale, so y ~ N(0, 1)), with every
64th input column scaled by 8: LLM weights have a few input channels of much larger magnitude,
and these stretch the block scales the way real outliers do.

Reference: float64 x @ decode(W)^T, so a kernel's error is measured apart from the format's
quantization error. Check (`check_matmul`): |y - ref| <= float_tolerance(float32, steps, S) with
S = max over outputs of sum over groups of ||x_g|| * ||w_g|| (g: the format's block or group,
at most k); by Cauchy-Schwarz S bounds sum_i |x_i| |w_i| both in the original and in a rotated
basis, so it also covers kernels that rotate the activation instead of the weights. steps = k
(any summation order of k terms) + the format's rotation roundings (log2 g + 1) + 4 (decode).

Variants that quantize the activations to 8 bits (`int8_dot`) return `QuantizedActivations(y,
"q8_0")`: the check then compares them with the reference computed from the activations
quantized the same way (the q8_0 format's own encoding of each row of x), not with the float
reference, so the 8-bit rounding of x is not mistaken for kernel error (it is a property of the
variant and shows in the model-level KLD instead).

Bytes: the packed weight (`format.bytes_for(n, k)`) plus x and y in float32. FLOPs: 2 m n k plus
the weight decode (n k decode FLOPs per value, rotation excluded) plus, for rotated formats, the
activation rotation (m k rotation FLOPs per value).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from quantbench.kernels import formats
from quantbench.kernels.checks import float_tolerance
from quantbench.kernels.errors import UserError
from quantbench.kernels.formats.base import Packed
from quantbench.kernels.registry import Case, Op, register_op

MODEL_SHAPES = ((1536, 576), (576, 1536))  # (n, k): SmolLM2-135M gate/up (dim -> hidden) and down
LARGE_SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008))  # 7B-class q/o, gate/up, down
GEMV_ROWS = 1
GEMM_ROWS = 512
OUTLIER_EVERY = 64
OUTLIER_SCALE = 8.0
# TCQ's trellis encoder is slow on the CPU (seconds per 1M weights): its cases stay at the model's shapes
SLOW_ENCODE_FAMILIES = ("trellis",)
WEIGHT_GROUP = 64  # the group given to formats whose default group does not divide the model's k (576)


@dataclass
class QuantizedActivations:
    """A result computed from activations quantized in `activation_format` (see module docstring).
    `roundings` counts the further roundings of a lower-precision kernel, as (dtype, count): a
    weight scale stored in bfloat16, the output rounded to it. Each moves the result by at most half
    an ulp of that dtype relative to S, which the check adds to its float32 tolerance."""

    y: torch.Tensor
    activation_format: str = "q8_0"
    roundings: tuple[tuple[torch.dtype, int], ...] = ()


def weight_inputs(case: Case) -> dict[str, torch.Tensor]:
    gen = case.generator()
    w = torch.randn(case.n, case.k, generator=gen, dtype=torch.float32) / math.sqrt(case.k)
    w[:, ::OUTLIER_EVERY] *= OUTLIER_SCALE
    x = torch.randn(case.m, case.k, generator=gen, dtype=torch.float32)
    return {"x": x.to(case.device), "w": w.to(case.device)}


@functools.lru_cache(maxsize=2)
def _packed_cpu(case: Case) -> tuple[torch.Tensor, Packed]:
    fmt = case.format_obj
    _check_shape(fmt, case.k)
    inputs = weight_inputs(case)
    return inputs["x"], fmt.encode(inputs["w"])


def packed_weights(case: Case) -> tuple[torch.Tensor, Packed]:
    """(x, packed W) for a case, on the case's device; the encoding is cached (it can take seconds)."""
    x, packed = _packed_cpu(case.with_device("cpu"))
    return x.to(case.device), packed.to(case.device)


def _check_shape(fmt, k: int) -> None:
    try:
        fmt.check_dim(k)
    except formats.FormatError as exc:
        raise UserError(f"weights of input dimension k={k} do not fit {fmt.spec}: {exc}") from None


def group_size(fmt, k: int) -> int:
    """Values per scale group along k: the block (32) or the rotation group."""
    group_for = getattr(fmt, "group_for", None)
    return group_for(k) if group_for else min(max(fmt.block, 32), k)


class WeightReference:
    """float64 references of one case, computed on first use."""

    def __init__(self, case: Case):
        self.case = case

    @functools.cached_property
    def weights(self) -> torch.Tensor:
        x, packed = packed_weights(self.case.with_device("cpu"))
        return self.case.format_obj.decode(packed).double()

    @functools.cached_property
    def y(self) -> torch.Tensor:
        return self.activations() @ self.weights.T

    @functools.cache
    def activations(self, activation_format: str | None = None) -> torch.Tensor:
        x, _ = packed_weights(self.case.with_device("cpu"))
        if activation_format is not None:
            x = formats.get(activation_format).roundtrip(x)
        return x.double()

    @functools.cache
    def y_with(self, activation_format: str) -> torch.Tensor:
        return self.activations(activation_format) @ self.weights.T

    def scale(self, activation_format: str | None = None) -> float:
        """max over outputs of sum over groups of ||x_g|| ||w_g|| (see module docstring)."""
        k = self.case.k
        g = group_size(self.case.format_obj, k)
        xg = self.activations(activation_format).reshape(self.case.m, k // g, g).norm(dim=-1)
        wg = self.weights.reshape(self.case.n, k // g, g).norm(dim=-1)
        return float((xg @ wg.T).max())


@functools.lru_cache(maxsize=2)
def weight_reference(case: Case) -> WeightReference:
    return WeightReference(case.with_device("cpu"))


def rounding_steps(case: Case) -> int:
    return case.k + int(case.format_obj.rotation_flops(case.k)) + 4


def check_matmul(case: Case, out, ref: WeightReference) -> None:
    activation_format, roundings = None, ()
    if isinstance(out, QuantizedActivations):
        activation_format, roundings, out = out.activation_format, out.roundings, out.y
    want = ref.y if activation_format is None else ref.y_with(activation_format)
    got = out.cpu().double()
    assert got.shape == want.shape, f"shape {tuple(got.shape)} != reference {tuple(want.shape)}"
    scale = ref.scale(activation_format)
    tol = float_tolerance(torch.float32, rounding_steps(case), scale) + \
        sum(count * torch.finfo(dtype).eps / 2 * scale for dtype, count in roundings)
    err = float((got - want).abs().max())
    against = "reference" if activation_format is None else f"reference with {activation_format} activations"
    assert err <= tol, f"max abs error {err:.3g} against the {against} exceeds tolerance {tol:.3g}"


def weight_bytes(case: Case) -> int:
    return case.format_obj.bytes_for(case.n, case.k) + 4 * case.m * (case.k + case.n)


def weight_flops(case: Case) -> int:
    fmt = case.format_obj
    decode = case.n * case.k * fmt.decode_flops_per_value
    rotation = case.m * case.k * fmt.rotation_flops(case.k)
    return int(2 * case.m * case.n * case.k + decode + rotation)


def _cases(op: str, m: int, large: tuple[tuple[int, int], ...]):
    def cases(spec: str) -> list[Case]:
        fmt = formats.get(spec)
        shapes = MODEL_SHAPES if fmt.family in SLOW_ENCODE_FAMILIES else MODEL_SHAPES + large
        fitting = [(n, k) for n, k in shapes if fmt.holds(k)]
        if not fitting:
            raise UserError(f"{op}: no default shape has an input dimension that {spec} can hold "
                            f"(k in {sorted({k for _, k in shapes})}); give the format a group, "
                            f"e.g. {fmt.name}:group=64")
        return [Case.make(op, spec, m=m, n=n, k=k) for n, k in fitting]
    return cases


def weight_specs() -> list[str]:
    """Every registered format as a weight at the model's shapes: as registered where it fits
    every k of MODEL_SHAPES, else with `group=WEIGHT_GROUP`, else as registered where it fits some
    of them (llama.cpp's k-quants: their 256-value super-blocks hold the down projection's k = 1536
    but not the model's width 576; `_cases` keeps the shapes they hold); formats that fit none are
    left out (the coverage test then names them)."""
    specs = []
    for name in formats.names():
        grouped = [f"{name}:group={WEIGHT_GROUP}"] if "group" in formats.options_of(name) else []
        everywhere = [spec for spec in (name, *grouped) if all(formats.get(spec).holds(k) for _, k in MODEL_SHAPES)]
        if everywhere:
            specs.append(everywhere[0])
        elif any(formats.get(name).holds(k) for _, k in MODEL_SHAPES):
            specs.append(name)
    return specs


for _name, _rows, _large, _what in (
    ("gemv", GEMV_ROWS, LARGE_SHAPES, "decode"),
    ("gemm", GEMM_ROWS, LARGE_SHAPES[:2], "prefill"),
):
    register_op(Op(
        name=_name,
        description=f"y = x @ W^T with W [n, k] stored in the format ({_what}: m = {_rows} activation rows)",
        make_inputs=weight_inputs,
        reference=weight_reference,
        bytes=weight_bytes,
        flops=weight_flops,
        default_cases=_cases(_name, _rows, _large),
        baseline=("torch", "dequant_matmul"),
        formats=weight_specs,
        check=check_matmul,
        in_run=_name == "gemv",
        dims=("m", "n", "k"),
        validate=lambda case: _check_shape(case.format_obj, case.k),
        run_formats=("f32", "q8_0", "q4_0", "q4_1"),
        run_filter=lambda case: case.n * case.k <= 1 << 20,
    ))
