"""Attention backends over the model's KV cache, registered by name (registry.py says the calling
convention). Every module of this package is imported here, so a new backend is a new file:

    sdpa.py      dequant_sdpa: decode the cache, then torch SDPA
    native.py    native and sparse_v: the numba kernels on the packed cache (kernels/attention)
"""
from __future__ import annotations

import importlib
import pkgutil

from quantbench.harness.model.attention.registry import attention_names, get_attention, register_attention
from quantbench.harness.model.attention.sdpa import dequant_sdpa

__all__ = ["attention_names", "dequant_sdpa", "get_attention", "register_attention"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
