"""The numpy reference variants of `tcq_encode` (the op's baseline): `trellis.encode_viterbi` and
`trellis.encode_greedy`, vectorized over groups, one Python step per value."""
from __future__ import annotations

from quantbench.kernels.formats import trellis
from quantbench.kernels.registry import variant
from quantbench.kernels.tcq.spec import EncodedPaths, is_tcq


def _factory(encoder: str):
    def factory(case):
        fmt = case.format_obj
        v = case.inputs()["v"].numpy()
        return lambda: EncodedPaths(encoder, trellis.pack_stream(trellis.encode(v, fmt.table, fmt.trellis, encoder),
                                                                 fmt.bits))
    factory.__doc__ = f"numpy {encoder} search, vectorized over groups"
    return factory


for _encoder in trellis.ENCODERS:
    variant("tcq_encode", backend="numpy", name=_encoder, formats=is_tcq)(_factory(_encoder))
