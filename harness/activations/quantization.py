"""An activation spec applied to a loaded model, alone or composed with quantized weights.

    act = prepare_activations(model, "int4,rotate=1")            # transforms folded, calibrated
    qw = quantize_weights(model, "q4_0", folded=act.folded)      # the weights of the folded model
    with act.with_weights(qw).installed(model):                  # W4A4 with a Hadamard rotation
        logits = model.logits(tokens)

The model's own weights stay as they are (the same model still gives the unquantized reference):
the folded weights, norm gains and embedding table are installed as overrides within the block.
Without smooth or rotate nothing is folded, and the weights quantized for the model itself compose
as they are.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

from ..errors import UserError
from ..weights.calibration import Calibration, calibration_tokens
from .folding import FoldedModel
from .linear import input_overrides, overrides_installed
from .quantizer import RowQuantizer
from .smoothing import input_maxima, smoothing_scales
from .spec import ActSpec, MatmulInput, bits_per_activation


@dataclass
class ActivationQuantization:
    spec: ActSpec
    inputs: dict[str, MatmulInput]
    folded: FoldedModel | None = None
    calibration: str = ""  # the smoothing calibration's label ("" without smoothing)
    weights: object = None  # harness/weights QuantizedWeights of the folded model (or of the model)
    _built: tuple = dataclasses.field(default=(None, None, None), repr=False)  # (transformer, matmul, overrides)

    @property
    def label(self) -> str:
        act = f"a:{self.spec.text}"
        return act if self.weights is None else f"{self.weights.label}|{act}"

    @property
    def method(self) -> str:
        """The weights' method and the smoothing calibration, "+"-joined ("" for neither)."""
        parts = [self.weights.variant] if self.weights is not None else []
        return "+".join(parts + ([f"smooth:calib={self.calibration}"] if self.calibration else []))

    @property
    def variant(self) -> str:
        return self.method or "dynamic"

    def bits(self) -> tuple[float, int]:
        """(bits per activation value, quantized matmul inputs); see spec.bits_per_activation."""
        return bits_per_activation(self.inputs)

    def with_weights(self, weights) -> "ActivationQuantization":
        """These activations over quantized weights, which must be the folded model's (quantize_weights(...,
        folded=self.folded)) when the spec folds anything."""
        if weights.folded is not self.folded:
            raise UserError(f"activation spec {self.spec.text!r}: the weights {weights.label} were quantized for "
                            "another model; quantize them with folded=<this activation quantization>.folded")
        self.check_weight_roles({sl.role for sl in weights.tensors})
        return dataclasses.replace(self, weights=weights, _built=(None, None, None))

    def check_weight_roles(self, roles: set[str]) -> None:
        """Refuse quantized embeddings where the transforms give the lookup and the output projection
        different tensors (a tied table, or rotate=1)."""
        if self.folded is not None and self.folded.changes_embeddings() and roles & {"embeddings"}:
            raise UserError(f"activation spec {self.spec.text!r} gives the embedding lookup and the output "
                            "projection different tensors (rotate=1, or smoothing of a tied output), so the "
                            "embedding table cannot be quantized with it; leave embeddings unquantized")

    def row_fields(self, kv: str, attn: str) -> dict:
        """The quality row fields of this setting with KV policy `kv` and attention backend `attn`."""
        bits, _ = self.bits()
        fields = {"act": self.spec.text, "act_bits": bits, "format": f"{self.label}|kv:{kv}",
                  "variant": f"{self.method}+{attn}" if self.method else attn}
        if self.weights is not None:
            summary = self.weights.summary()
            fields.update({"weights": self.weights.spec.text, "method": self.weights.variant,
                           "weights_bpw": summary["bits_per_weight"],
                           "embeddings_included": summary["embeddings_included"]})
        return fields

    @contextlib.contextmanager
    def installed(self, model, matmul: str = "dense"):
        """Within the block the forward quantizes these activations (over the weights, if any)."""
        if self._built[0] is not model.transformer or self._built[1] != matmul:
            self._built = (model.transformer, matmul, self._overrides(model, matmul))
        linear, table, norms = self._built[2]
        with overrides_installed(model, linear, table, norms):
            yield

    def _overrides(self, model, matmul: str):
        weight_matmuls, table = self.weights.overrides(model, matmul) if self.weights is not None else ({}, None)
        quantizers = {fmt.spec: RowQuantizer(fmt) for put in self.inputs.values() for fmt in put.formats()}
        inputs = {name: [(start, stop, quantizers[fmt.spec] if fmt is not None else None)
                         for start, stop, fmt in put.ranges] for name, put in self.inputs.items()}
        linear = input_overrides(model, inputs, self.folded, weight_matmuls)
        if self.folded is None:
            return linear, table, {}
        return linear, self.folded.table if self.folded.table is not None else table, self.folded.norms


def prepare_activations(model, spec: str | ActSpec, *, calibration: Calibration | None = None,
                        maxima: dict | None = None, progress: bool = True) -> ActivationQuantization:
    """The spec's inputs, with its transforms folded: smoothing calibrates on `calibration` (default:
    calibration_tokens(model)). `maxima` ((rotated, weight name) -> max |x_j|), if given, is reused
    and filled: pass the same dict for several specs with the same calibration."""
    spec = spec if isinstance(spec, ActSpec) else ActSpec(spec)
    inputs = spec.assign(model.config)
    if not spec.transforms:
        return ActivationQuantization(spec, inputs)
    rotated = FoldedModel(model, rotate_model=True) if spec.rotate else None
    if spec.smooth is None:
        return ActivationQuantization(spec, inputs, rotated)
    calibration = calibration or calibration_tokens(model)
    maxima = {} if maxima is None else maxima
    missing = [name for name in inputs if (spec.rotate, name) not in maxima]
    if missing:
        found = input_maxima(model, missing, calibration.tokens, rotated, progress)
        maxima.update({(spec.rotate, name): m for name, m in found.items()})
    weight = rotated.weight if rotated is not None else (lambda name: model.transformer.w[name.replace(".", "_")])
    scales = smoothing_scales({name: maxima[(spec.rotate, name)] for name in inputs}, weight, spec.smooth)
    return ActivationQuantization(spec, inputs, FoldedModel(model, spec.rotate, scales), calibration.label)
