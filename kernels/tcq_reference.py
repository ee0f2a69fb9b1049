"""The numpy reference variants of `tcq_encode` (the op's baseline): `trellis.encode_viterbi` and
`trellis.encode_greedy`, vectorized over groups, one Python step per value."""
from __future__ import annotations

from quantbench.harness.ops_tcq import TCQ_FORMATS, EncodedPaths
from quantbench.harness.registry import variant

from . import trellis


def _factory(encoder: str):
    def factory(case):
        fmt = case.format_obj
        v = case.inputs()["v"].numpy()
        return lambda: EncodedPaths(encoder, trellis.pack_stream(trellis.encode(v, fmt.table, fmt.trellis, encoder),
                                                                 fmt.bits))
    factory.__doc__ = f"numpy {encoder} search, vectorized over groups"
    return factory


for _encoder in trellis.ENCODERS:
    variant("tcq_encode", backend="numpy", name=_encoder, formats=TCQ_FORMATS)(_factory(_encoder))
