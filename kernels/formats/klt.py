"""Bit allocation across the channels of a per-layer KLT (PCA) rotation: `klt3` (or any average, e.g.
`klt3.5`), a KV-cache quantizer whose rotation and bit allocation come from a model's calibrated
statistics (harness/model/klt_store.py builds it per layer and KV head).

A fixed Hadamard rotation makes every channel look alike, so every channel gets the same bits. A
KLT, the eigenvectors U of the unit vectors' second moment C = E[u u^T] (u = x / ||x||), leaves
the channels uncorrelated with variances lambda_i instead, and reverse water-filling spends bits
where the variance is: integer bits b_i, given one at a time to the channel whose distortion
lambda_i D(b_i) falls most (D(b): the Lloyd-Max distortion of N(0, 1) at b bits, D(0) = 1), until
the average is reached; at most MAX_BITS per channel. Encode: z = U^T u, each z_i quantized by the
b_i-bit Lloyd-Max quantizer of N(0, lambda_i) (0 where b_i = 0), the norm stored in fp16 as
||x|| / ||z||, so that the decoded x = norm U z has the input's norm (turbo's norm correction).
Bits per value: the average + 16 / head_dim (the norm), plus the tables, which are the model's and
counted over the context: U in fp16 and the allocation, 16 head_dim / ctx.
(Published work: the KLT plus water-filling is what a fixed rotation leaves on the table at 3 to
3.5 bits.)
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch

from quantbench.kernels.errors import FormatError

from . import lloyd_max

MAX_BITS = 6
_SPEC = re.compile(r"^klt(?P<bits>\d+(?:\.\d+)?)$")


@functools.lru_cache(maxsize=None)
def distortion(bits: int) -> float:
    """MSE of the b-bit Lloyd-Max quantizer of N(0, 1) (1 at 0 bits), by quadrature."""
    if bits == 0:
        return 1.0
    x = torch.linspace(-8, 8, 200_001, dtype=torch.float64)
    levels = torch.tensor(lloyd_max.gaussian_levels(bits), dtype=torch.float64)
    nearest = levels[torch.bucketize(x, (levels[1:] + levels[:-1]) / 2)]
    density = torch.exp(-x * x / 2) / (2 * torch.pi) ** 0.5
    return float(((x - nearest) ** 2 * density).sum() * (x[1] - x[0]))


def allocate(variances: torch.Tensor, average_bits: float) -> list[int]:
    """Integer bits per channel, summing to round(average * channels), by greedy reverse water-filling."""
    total = round(average_bits * variances.numel())
    bits = [0] * variances.numel()
    lam = variances.double().clamp_min(0).tolist()
    for _ in range(min(total, MAX_BITS * len(bits))):
        best = max((i for i in range(len(bits)) if bits[i] < MAX_BITS),
                   key=lambda i: lam[i] * (distortion(bits[i]) - distortion(bits[i] + 1)))
        bits[best] += 1
    return bits


@dataclass(frozen=True)
class KLTFormat:
    average_bits: float

    @property
    def spec(self) -> str:
        return f"klt{self.average_bits:g}"

    name = "klt"

    def bits_per_value_for(self, dim: int) -> float:
        return self.average_bits + 16 / dim

    def table_bits(self, dim: int, ctx: int) -> float:
        """The rotation (fp16, dim x dim) and the allocation (3 bits a channel) per layer and KV head,
        over ctx positions of dim values."""
        return (16 * dim * dim + 3 * dim) / (ctx * dim)


class KLTQuantizer:
    """One KV head's rotation and allocation: quantize x [..., dim] to its decoded values."""

    def __init__(self, second_moment: torch.Tensor, average_bits: float):
        eigenvalues, vectors = torch.linalg.eigh(second_moment.double())
        order = eigenvalues.argsort(descending=True)
        self.variances = eigenvalues[order].clamp_min(0)
        self.basis = vectors[:, order].half().float()  # stored in fp16
        self.bits = allocate(self.variances, average_bits)
        sigma = self.variances.sqrt().float()
        self.levels = [None if b == 0 else torch.tensor(lloyd_max.gaussian_levels(b)) * sigma[i]
                       for i, b in enumerate(self.bits)]

    def roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        norm = x.norm(dim=-1, keepdim=True).half().float()
        z = ((x / norm.clamp_min(1e-30)) @ self.basis).movedim(-1, 0).contiguous()  # channels first
        out = torch.zeros_like(z)
        for i, levels in enumerate(self.levels):
            if levels is not None:
                out[i] = levels[torch.bucketize(z[i], (levels[1:] + levels[:-1]) / 2)]
        out = out.movedim(0, -1)
        corrected = norm / out.norm(dim=-1, keepdim=True).clamp_min(1e-30)  # the input's norm, as turbo's
        return (out @ self.basis.T) * corrected.half().float()


def klt_format(spec: str) -> KLTFormat | None:
    match = _SPEC.match(spec.strip())
    if not match:
        return None
    bits = float(match["bits"])
    if not 0 < bits <= MAX_BITS:
        raise FormatError(f"{spec}: the average bits must be within 0..{MAX_BITS}")
    return KLTFormat(bits)
