"""Numba `tcq_encode` variants: the Viterbi and greedy searches of kernels/formats/trellis_numba.py."""
from __future__ import annotations

from quantbench.kernels.formats.trellis_numba import encode_paths, pack_stream
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import EncodedPaths, is_tcq


def _encode_factory(encoder: str):
    def factory(case):
        fmt = case.format_obj
        v = case.inputs()["v"].numpy()
        return lambda: EncodedPaths(encoder, pack_stream(encode_paths(v, fmt.table, fmt.trellis, encoder),
                                                         fmt.trellis.k))
    factory.__doc__ = f"numba {encoder} search, parallel over groups"
    return factory


variant("tcq_encode", backend="numba", name="viterbi", formats=is_tcq, needs=("numba",))(
    _encode_factory("viterbi"))
variant("tcq_encode", backend="numba", name="greedy", formats=is_tcq, needs=("numba",))(
    _encode_factory("greedy"))


