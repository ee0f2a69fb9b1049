"""What a kind's runner hands the statistics: per arm, the measurement split into blocks that were
taken on the same inputs for every arm (chunks of the same tokens, timing rounds run round-robin,
groups of the same rows), so that a resample of blocks pairs the arms.

Plain data (numpy arrays, floats, strings): a Measurement crosses process boundaries (Ray) as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ArmData:
    blocks: list[dict[str, np.ndarray]]  # per block: named per-item arrays (per-token KLD, timing samples...)
    fixed: dict[str, float] = field(default_factory=dict)  # metrics with no sampling error (bits per value)


@dataclass
class Measurement:
    kind: str
    metric: str
    direction: str  # "lower" or "higher" is better, as the kind's records say
    unit: str
    block: str  # what one block is: "chunk", "round", "row group"
    case: str  # the record case: the configuration measured
    device: str
    arms: dict[str, ArmData]  # arm label -> data, the baseline first
    shown: dict[str, dict[str, float]] = field(default_factory=dict)  # arm label -> key metrics for the table

    @property
    def n_blocks(self) -> int:
        return min(len(a.blocks) for a in self.arms.values())
