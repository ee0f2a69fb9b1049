"""Activation quantization at the model level: per-token quantizers on the inputs of chosen matmuls,
SmoothQuant's migration and a QuaRot-style Hadamard rotation folded into the weights.

    from quantbench.harness.activations import prepare_activations
    act = prepare_activations(model, "default=int8,smooth=0.5")
    act.bits()                          # bits per activation value
    with act.installed(model):          # the forward quantizes the activations
        logits = model.logits(tokens)

spec.py (the grammar), quantizer.py (per-token fake quantization), folding.py (the transforms
folded into the weights), smoothing.py (SmoothQuant's calibration), linear.py (the wrapped matmuls
and their installation), quantization.py (a spec applied to a model, composed with quantized weights).
"""
from .folding import FoldedModel
from .quantization import ActivationQuantization, prepare_activations
from .spec import ActSpec, ActSpecError, MatmulInput, bits_per_activation

__all__ = ["FoldedModel", "ActivationQuantization", "prepare_activations", "ActSpec", "ActSpecError", "MatmulInput",
           "bits_per_activation"]
