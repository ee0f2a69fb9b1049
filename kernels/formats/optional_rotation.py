"""A `rotate` option for formats that quantize in blocks: a randomized Hadamard rotation of each
group of `group` values first (signs, then the orthonormal FWHT, as q4_0_rot), undone after the
decode. The group geometry is RotationGroups' and is checked only when the rotation is on."""
from __future__ import annotations

import math

import torch

from .base import Format, RotationGroups, check_power_of_two_group
from .rotation import rotate, unrotate


class OptionalRotation(RotationGroups):
    rotate: bool = False
    signs: bool = True

    def set_rotation(self, rotate: bool, group: int | None, signs: bool) -> dict:
        """Store the options; returns the non-default ones, for the spec."""
        if group is not None:
            check_power_of_two_group(self.name, group)
        self.rotate, self.group, self.signs = rotate, group, signs
        return {k: v for k, v in (("rotate", rotate or None), ("group", group), ("signs", None if signs else False))
                if v is not None}

    def check_dim(self, dim: int) -> None:
        Format.check_dim(self, dim)
        if self.rotate:
            RotationGroups.check_dim(self, dim)

    def rotation_flops(self, dim: int) -> float:
        return math.log2(self.group_for(dim)) + 1 if self.rotate else 0.0

    def rotated(self, x: torch.Tensor) -> torch.Tensor:
        return rotate(x, self.group_for(x.shape[-1]), self.signs) if self.rotate else x

    def unrotated(self, y: torch.Tensor) -> torch.Tensor:
        return unrotate(y, self.group_for(y.shape[-1]), self.signs) if self.rotate else y
