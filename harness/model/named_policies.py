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
        spec="k=turbo3_tcq,v=turbo2_tcq,window48=q8_0,sinks4=q8_0",
        source="the lowest mean KLD within 3.5 bits per value (ctx 512) that `quantbench search --budget 3.5 "
               "--chunks 8 --k-only kivi2,turbo3_tcq:code=smollm2-tcq3-k --windows 16,32,48,64` found on the "
               "embedded SmolLM2-135M (3.33 bits; before the search tried techniques: window64 alone, 3.47 "
               "bits); README, KV-cache techniques"),
}


def expand_named(kv: str) -> str:
    """The policy a name stands for; any other text unchanged."""
    named = NAMED_POLICIES.get(kv.strip())
    return named.spec if named is not None else kv
