"""Weight quantization at the model level: per-role specs, rtn and gptq, calibration Hessians.

    from quantbench.harness.weights import quantize_weights
    qw = quantize_weights(model, "default=q4_0,k=q8_0,down@0-3=q8_0", method="gptq")
    qw.summary()                       # bits per weight over the quantized tensors
    with qw.installed(model):          # the forward uses the quantized weights
        logits = model.logits(tokens)

roles.py (the spec grammar and the role of every tensor), rtn.py, gptq.py, inner.py (the formats'
quantizers per column group), calibration.py, quantized_model.py, sensitivity.py.
"""
from .calibration import Calibration, calibration_tokens, collect_hessians
from .gptq import GPTQOptions, gptq_quantize
from .quantized_model import EMBEDDED_NOTE, MATMULS, METHODS, QuantizedWeights, quantize_weights
from .roles import LAYER_ROLES, ROLES, WeightSpec, WeightSpecError, bits_summary, role_slices
from .rtn import QuantizedTensor, rtn_quantize

__all__ = ["Calibration", "calibration_tokens", "collect_hessians", "GPTQOptions", "gptq_quantize",
           "EMBEDDED_NOTE", "MATMULS", "METHODS", "QuantizedWeights", "quantize_weights", "LAYER_ROLES", "ROLES",
           "WeightSpec", "WeightSpecError", "bits_summary", "role_slices", "QuantizedTensor", "rtn_quantize"]
