"""A weights spec applied to a loaded model: quantize each role slice (rtn or gptq) and install the
result in the model's forward as per-weight linear overrides (the model's own weights stay as they
are, so the same model still gives the unquantized reference).

    qw = quantize_weights(model, "default=q4_0,k=q8_0", method="gptq")
    with qw.installed(model, matmul="dense"):
        logits = model.logits(tokens)

`matmul` picks how a quantized weight is multiplied:
    dense           the dequantized weights precomputed once, then F.linear (quality runs)
    dequant_matmul  decode the packed weights on every call, then F.linear (the "cuBLAS" path)
    fused_fma, int8_dot   quantbench.kernels.matmul.numba on the packed weights (CPU, numba; the
                    activations are divided by the input scale first when gptq's alpha option made one)
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from quantbench.kernels.formats import FormatError

from ..errors import UserError
from .calibration import Calibration, calibration_tokens, collect_hessians
from .gptq import GPTQOptions, gptq_quantize
from .roles import Slice, WeightSpec, bits_summary
from .rtn import QuantizedTensor, rtn_quantize

METHODS = ("rtn", "gptq")
MATMULS = ("dense", "dequant_matmul", "fused_fma", "int8_dot")
KERNEL_MATMULS = ("fused_fma", "int8_dot")
EMBEDDED_NOTE = ("note: the embedded SmolLM2-135M's weights are stored as Q4_1 (dequantized to float on load), so "
                 "'unquantized' here means those Q4_1 values; use your own fp16 model (-m) for weight studies")


@dataclass
class QuantizedWeights:
    spec: WeightSpec
    method: str  # "rtn" or a GPTQOptions label
    tensors: dict[Slice, QuantizedTensor]
    calibration: str = ""
    notes: list[str] = field(default_factory=list)
    # the model rewritten with other weights of the same function (harness/activations' smoothing and
    # rotation folded in): its weights were quantized, and its dense rows are the ones kept; None: the model's
    folded: object = None
    _built: tuple = field(default=(None, None, None, None), repr=False)  # (transformer, matmul, overrides, table)

    @property
    def label(self) -> str:
        return f"w:{self.spec.text}"

    @property
    def variant(self) -> str:
        return self.method if not self.calibration else f"{self.method}:calib={self.calibration}"

    def summary(self) -> dict:
        extra = {sl: qt.side_bits for sl, qt in self.tensors.items()}
        return bits_summary([(sl, qt.fmt) for sl, qt in self.tensors.items()], extra)

    @contextlib.contextmanager
    def installed(self, model, matmul: str = "dense"):
        """Within the block, the model's forward uses these quantized weights (built once per model and matmul)."""
        t = model.transformer
        if t.linear_overrides or t.embedding_override is not None:
            raise UserError("the model already has quantized weights installed")
        t.linear_overrides, t.embedding_override = self.overrides(model, matmul)
        try:
            yield
        finally:
            t.linear_overrides, t.embedding_override = {}, None

    def overrides(self, model, matmul: str = "dense") -> tuple[dict, torch.Tensor | None]:
        """(linear overrides by weight name, embedding table or None) for the model's forward, built
        once per model and matmul; `installed` puts them in place."""
        if matmul not in MATMULS:
            raise UserError(f"unknown matmul {matmul!r} (choose from {', '.join(MATMULS)})")
        if self._built[0] is not model.transformer or self._built[1] != matmul:
            self._built = (model.transformer, matmul, *self._overrides(model, matmul))
        return self._built[2], self._built[3]

    def _overrides(self, model, matmul: str):
        t = model.transformer
        by_tensor: dict[str, list[tuple[Slice, QuantizedTensor]]] = {}
        for sl, qt in self.tensors.items():
            by_tensor.setdefault(sl.tensor, []).append((sl, qt))
        overrides, table = {}, None
        for name, parts in by_tensor.items():
            linear = PackedLinear(_source_weight(t, name, self.folded), parts, matmul)
            if name == "tok_embeddings":
                table = linear.effective_weight()
                if not model.config.tie_embeddings:
                    continue
            overrides[name] = linear
        return overrides, table


class PackedLinear:
    """y = x W^T for one weight tensor whose row ranges are quantized (possibly in different formats)
    and whose other rows stay dense."""

    def __init__(self, dense: torch.Tensor, parts: list[tuple[Slice, QuantizedTensor]], matmul: str):
        self.matmul = matmul
        self.dtype, self.device = dense.dtype, dense.device
        self.pieces: list[tuple[int, int, QuantizedTensor | None, torch.Tensor | None]] = []
        row = 0
        for sl, qt in sorted(parts, key=lambda p: p[0].start):
            if sl.start > row:
                self.pieces.append((row, sl.start, None, dense[row:sl.start]))
            self.pieces.append((sl.start, sl.stop, qt.to(dense.device), None))
            row = sl.stop
        if row < dense.shape[0]:
            self.pieces.append((row, dense.shape[0], None, dense[row:]))
        self._effective = None
        self._kernels = {}
        if matmul == "dense":
            self._effective = self.effective_weight()
        elif matmul in KERNEL_MATMULS:  # prepared once, outside any timed region
            prepare = _kernel_matmul(matmul)
            self._kernels = {start: prepare(qt.packed, qt.fmt, matmul) for start, _, qt, _ in self.pieces if qt}

    def effective_weight(self) -> torch.Tensor:
        if self._effective is None:
            pieces = [d if qt is None else qt.dequantized().to(self.device, self.dtype) for _, _, qt, d in self.pieces]
            self._effective = torch.cat(pieces)
        return self._effective

    def __call__(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        if self.matmul == "dense":
            return F.linear(x, self._effective, bias)
        outs = []
        for start, _, qt, d in self.pieces:
            if qt is None:
                outs.append(F.linear(x, d))
                continue
            xs = x if qt.input_scale is None else x / qt.input_scale.to(x.device, x.dtype)
            if self.matmul == "dequant_matmul":
                outs.append(F.linear(xs, qt.fmt.decode(qt.packed, x.dtype)))
            else:
                kernel = self._kernels[start]
                rows = xs.detach().reshape(-1, xs.shape[-1]).to("cpu", torch.float32).contiguous()
                out = np.empty((rows.shape[0], kernel.n), np.float32)
                kernel(rows, out)
                outs.append(torch.from_numpy(out).reshape(*xs.shape[:-1], kernel.n).to(x.device, x.dtype))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return y if bias is None else y + bias


def _kernel_matmul(variant: str):
    """quantbench.kernels.matmul.numba's prepared matmul (raises FormatError for formats it lacks)."""
    try:
        from quantbench.kernels.matmul.numba import NumbaMatmul
    except ImportError as exc:
        raise UserError(f"matmul {variant}: quantbench.kernels.matmul.numba is not available ({exc})") from None
    return NumbaMatmul


def quantize_weights(model, spec: str | WeightSpec, method: str = "rtn", *, gptq: GPTQOptions | None = None,
                     calibration: Calibration | None = None, hessians: dict | None = None,
                     progress: bool = True, folded=None) -> QuantizedWeights:
    """Quantize every slice the spec assigns. gptq takes its Hessians from `calibration` (default:
    calibration_tokens(model)); an untied embedding table has no matmul input, so it gets rtn.
    `hessians` (weight name -> H of the model's own inputs), if given, is reused and filled: pass the
    same dict for several specs with the same calibration.
    `folded` (harness/activations' FoldedModel): quantize its weights instead of the model's, the
    Hessians mapped to its inputs by `folded.hessian(name, H)`."""
    spec = spec if isinstance(spec, WeightSpec) else WeightSpec(spec)
    if method not in METHODS:
        raise UserError(f"unknown weight quantization method {method!r} (choose from {', '.join(METHODS)})")
    assigned = spec.assign(model.config)
    if not assigned:
        raise UserError(f"weights spec {spec.text!r} quantizes no tensor")
    t = model.transformer
    notes = []
    hessians = {} if hessians is None else hessians
    options = gptq or GPTQOptions()
    if method == "gptq":
        calibration = calibration or calibration_tokens(model)
        names = sorted({sl.tensor for sl, _ in assigned if not _lookup_only(sl, model.config)})
        missing = [n for n in names if n not in hessians]
        if missing:
            hessians.update(collect_hessians(model, calibration.tokens, missing, progress))
        if any(_lookup_only(sl, model.config) for sl, _ in assigned):
            notes.append("embeddings (untied: a lookup table, no matmul input) quantized with rtn")
    tensors = {}
    batches: dict[tuple[str, str], list] = {}  # slices of one tensor in one format share H: one gptq run
    for sl, fmt in assigned:
        use_gptq = method == "gptq" and sl.tensor in hessians
        batches.setdefault((sl.tensor, fmt.spec) if use_gptq else (sl.label, fmt.spec), []).append((sl, fmt))
    for n, batch in enumerate(batches.values()):
        fmt = batch[0][1]
        tensor = batch[0][0].tensor
        w = torch.cat([_source_weight(t, tensor, folded)[sl.start:sl.stop] for sl, _ in batch]).float().cpu()
        labels = ", ".join(sl.label for sl, _ in batch)
        try:
            if method == "gptq" and tensor in hessians:
                h = hessians[tensor] if folded is None else folded.hessian(tensor, hessians[tensor])
                qt = gptq_quantize(w, h, fmt, options)
            else:
                qt = rtn_quantize(w, fmt)
        except FormatError as exc:
            raise FormatError(f"{labels} ({tensor}): {exc}") from None
        row = 0
        for sl, _ in batch:
            tensors[sl] = qt.rows(row, row + sl.stop - sl.start)
            row += sl.stop - sl.start
        if progress and (n + 1) % 20 == 0:
            print(f"weights {method}: {n + 1}/{len(batches)} batches", file=sys.stderr, flush=True)
    label = "rtn" if method == "rtn" else options.label
    return QuantizedWeights(spec, label, tensors, calibration.label if method == "gptq" else "", notes, folded)


def _source_weight(t, name: str, folded) -> torch.Tensor:
    return t.w[name.replace(".", "_")] if folded is None else folded.weight(name)


def _lookup_only(sl: Slice, config) -> bool:
    return sl.role == "embeddings" and not config.tie_embeddings
