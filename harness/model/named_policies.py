"""KV policies known by a name, e.g. `best:3.5`: `quantbench quality --kv q4_0_rot,best:3.5` measures
the named one beside others. Each entry says where it comes from; its rows are labelled with the
policy it stands for, so a record never hides what was measured."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedPolicy:
    spec: str
    source: str


NAMED_POLICIES = {
    "best:3.5": NamedPolicy(
        spec="k=turbo3_tcq,v=turbo2_tcq,window64=q8_0",
        source="the lowest mean KLD within 3.5 bits per value (ctx 512) that `quantbench search --budget 3.5 "
               "--chunks 8` found on the embedded SmolLM2-135M; README, KV-cache techniques"),
}


def expand_named(kv: str) -> str:
    """The policy a name stands for; any other text unchanged."""
    named = NAMED_POLICIES.get(kv.strip())
    return named.spec if named is not None else kv
