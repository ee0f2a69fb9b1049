"""Per-channel quantization along the token axis (KIVI's keys: Liu et al. 2024; KVQuant's
per-channel keys: Hooper et al. 2024): `kivi2`, `kivi4`, option `group` (tokens per group, default 32).

Every `group` consecutive tokens share, per channel, an asymmetric uniform grid of 2^bits levels
from the channel's min to its max over the group; the scale and min are fp16. A key cache's
channels differ in range far more than its tokens do (outlier channels), which is why KIVI
quantizes keys this way and values per token. Bits per value: bits + 32 / group.

These are not per-row formats (kernels/formats/__init__.py's registry): a group needs `group`
tokens before it can be quantized, so a KV cache keeps the tokens of an incomplete group unquantized
(KIVI's residual; harness/model/token_group_store.py) and the ops' per-row cases do not apply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from quantbench.kernels.errors import FormatError

NAMES = {"kivi2": 2, "kivi4": 4}
DEFAULT_GROUP = 32
_SPEC = re.compile(r"^(?P<name>kivi\d+)(?::group=(?P<group>\d+))?$")


@dataclass(frozen=True)
class ChannelGroups:
    bits: int
    group: int = DEFAULT_GROUP

    @property
    def name(self) -> str:
        return f"kivi{self.bits}"

    @property
    def spec(self) -> str:
        return self.name + ("" if self.group == DEFAULT_GROUP else f":group={self.group}")

    def bits_per_value_for(self, dim: int) -> float:
        return self.bits + 32 / self.group

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [group, ...] (tokens first) -> (uint8 levels [group, ...], fp16 scale [...], fp16 min [...])."""
        if x.shape[0] != self.group:
            raise FormatError(f"{self.spec}: a group holds {self.group} tokens, got {x.shape[0]}")
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise FormatError(f"{self.spec}: NaN or infinite values")
        low, high = x.amin(0), x.amax(0)
        top = (1 << self.bits) - 1
        scale = ((high - low) / top).half()
        low = low.half()
        if bool(torch.isinf(scale).any()):
            raise FormatError(f"{self.spec}: a channel's range overflows float16")
        step = scale.float()
        levels = torch.where(step > 0, ((x - low.float()) / torch.where(step > 0, step, 1.0)).round(), 0.0)
        return levels.clamp(0, top).to(torch.uint8), scale, low

    def dequantize(self, levels: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return levels.float() * scale.float() + low.float()


def token_group_format(spec: str) -> ChannelGroups | None:
    """The format a spec names, None when it names none of these; a bad option is a FormatError."""
    match = _SPEC.match(spec.strip())
    if not match or match["name"] not in NAMES:
        if spec.strip().split(":")[0] in NAMES:
            raise FormatError(f"{spec}: the only option of {spec.split(':')[0]} is group=<tokens>")
        return None
    group = int(match["group"] or DEFAULT_GROUP)
    if group < 2:
        raise FormatError(f"{spec}: a group needs at least 2 tokens")
    return ChannelGroups(NAMES[match["name"]], group)
