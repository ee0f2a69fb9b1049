"""The --act / --smooth-* options of quality: activation specs, alone and over each --weights spec."""
from __future__ import annotations

from quantbench.harness.activations import ActSpec, prepare_activations
from quantbench.harness.errors import UserError
from quantbench.harness.weights import WeightSpec, calibration_tokens
from quantbench.harness.weights.calibration import DEFAULT_LENGTH, DEFAULT_SEQUENCES

from .common import positive_int
from .weight_options import build_weights, weight_specs

ACT_COLUMNS = ["act", "act_bits"]


def add_act_options(p) -> None:
    p.add_argument("--act", metavar="SPEC", default=None,
                   help="quantize the inputs of the matmuls per token: 'int8', 'default=int4,down=int8', "
                        "'attn@0-3=fp8_e4m3' (the --weights grammar; roles q k v o gate up down output; any "
                        "format, applied to each token's row; f32 quantizes nothing), with smooth=ALPHA "
                        "(SmoothQuant's migration, 0..1) and rotate=1 (Hadamard rotation, QuaRot-style) as items: "
                        "'int8,smooth=0.5', 'int4,rotate=1'; ';' separates several specs. With --weights, rows "
                        "for the weights alone, the activations alone and both")
    p.add_argument("--smooth-sequences", type=positive_int, default=DEFAULT_SEQUENCES,
                   help=f"smooth=: calibration sequences, from the end of the corpus (default {DEFAULT_SEQUENCES})")
    p.add_argument("--smooth-length", type=positive_int, default=DEFAULT_LENGTH,
                   help=f"smooth=: calibration tokens per sequence (default {DEFAULT_LENGTH})")


def act_specs(args) -> list[ActSpec]:
    specs = [ActSpec(s.strip()) for s in (args.act or "").split(";") if s.strip()]
    if args.act is not None and not specs:
        raise UserError("--act: no spec given")
    return specs


def build_activations(model, args, weights: list, corpus=None, reserved_tokens: int = 0,
                      hessians: dict | None = None) -> list:
    """Per --act spec: the activations alone, then over each of `weights` (build_weights' list),
    quantized again for the folded model when the spec folds smoothing or a rotation in."""
    specs = act_specs(args)
    calibration, maxima, out = None, {}, []
    for spec in specs:
        if spec.smooth is not None and calibration is None:
            calibration = calibration_tokens(model, corpus, args.smooth_sequences, args.smooth_length, reserved_tokens)
        act = prepare_activations(model, spec, calibration=calibration, maxima=maxima)
        out.append(act)
        if not weights:
            continue
        if act.folded is not None:
            for text in weight_specs(args):
                act.check_weight_roles({sl.role for sl, _ in WeightSpec(text).assign(model.config)})
            folded_weights = build_weights(model, args, corpus, reserved_tokens, folded=act.folded, hessians=hessians)
        out += [act.with_weights(w) for w in (weights if act.folded is None else folded_weights)]
    return out


def acts_title(acts: list) -> str:
    parts = []
    for act in acts:
        if act.weights is not None:
            continue
        bits, count = act.bits()
        transforms = []
        if act.calibration:
            transforms.append(f"SmoothQuant alpha {act.spec.smooth:g} calibrated on {act.calibration}")
        if act.spec.rotate:
            transforms.append("Hadamard rotation folded in (down's input rotated online)")
        parts.append(f"{act.label}: {bits:.4g} bits per activation value over {count} quantized matmul inputs, "
                     "quantized per token on the fly" + "".join("; " + t for t in transforms))
    return "\n" + "\n".join(parts) if parts else ""
