"""Trellis-coded TurboQuant: `turbo2_tcq`, `turbo3_tcq`.

Per group of g values (option `group`; default: the whole last dimension), as turbo2/turbo3
(kernels/formats/turbo.py): the L2 norm n (summed in float64), u = x / n, y = H (s * u) / sqrt(g)
with fixed seeded random signs s and the orthonormal FWHT. Then, in place of the scalar Lloyd-Max
codebook, a tail-biting bitshift trellis (kernels/formats/trellis.py) codes the group y * sqrt(g) (unit
variance): k bits per value, an L-bit state, level = table[state] / sqrt(g).
Stored norm: n / ||levels|| with norm correction (the reconstruction keeps the input's norm), else n.
Decode: x = s * H (norm * levels) / sqrt(g), as turbo.

Fields (leading dimensions are the rows):
  codes  uint8   [..., dim * k / 8]  each group's k*g-bit stream, MSB-first, groups in order
  norms  float16 [..., dim / g]
Bits per value: exactly k + 16 / g. A value decodes from the L-bit window of its group's stream
that ends with its own k bits (read circularly) and one table lookup, then the inverse rotation.

Options: group, L (state bits, default 9: 512 states), code (trained | random | hash | the name of a
table trained on a model, kernels/formats/codebook_tables.py), encoder
(viterbi | greedy), rotate, signs, norm_correction.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from quantbench.kernels.formats import register
from quantbench.kernels.formats import trellis as trellis_mod
from quantbench.kernels.formats.base import Format, FormatError, Packed, RotationGroups, check_power_of_two_group
from quantbench.kernels.formats.codebook_tables import trained_trellis_table
from quantbench.kernels.formats.rotation import fwht, random_signs
from quantbench.kernels.formats.trellis_codes import code_table

FP16_MAX = 65504.0
MAX_TRAINED_L = 12  # training cost doubles per state bit: L = 12 takes a few minutes on 2 cores
_DEFAULTS = {"group": None, "L": 9, "code": "trained", "encoder": "viterbi", "rotate": True, "signs": True,
             "norm_correction": True}


class _TurboTCQ(RotationGroups, Format):
    family = "trellis"
    bits: int = 0  # k
    decode_flops_per_value = 2.0  # lookup, scale

    def __init__(self, *, group: int | None = None, L: int = 9, code: str = "trained", encoder: str = "viterbi",
                 rotate: bool = True, signs: bool = True, norm_correction: bool = True):
        if group is not None:
            if isinstance(group, bool) or not isinstance(group, int):
                raise FormatError(f"{self.name}: group must be an integer, got {group!r}")
            check_power_of_two_group(self.name, group)
        if code not in trellis_mod.CODES:  # a table trained on a model: checked now, not at encode
            try:
                trained_trellis_table(code, self.bits, L)
            except FormatError as exc:
                raise FormatError(f"{self.name}: unknown code {code!r}: not one of {', '.join(trellis_mod.CODES)}, "
                                  f"and {exc}") from None
        if encoder not in trellis_mod.ENCODERS:
            raise FormatError(f"{self.name}: unknown encoder {encoder!r}; "
                              f"choose one of {', '.join(trellis_mod.ENCODERS)}")
        self.trellis = trellis_mod.Trellis(self.bits, L)
        if code == "trained" and L > MAX_TRAINED_L:
            raise FormatError(f"{self.name}: trained tables go up to L={MAX_TRAINED_L} (training time doubles "
                              f"per state bit); for L={L} use code=random or code=hash")
        given = {"group": group, "L": L, "code": code, "encoder": encoder, "rotate": rotate, "signs": signs,
                 "norm_correction": norm_correction}
        super().__init__(**{k: v for k, v in given.items() if v != _DEFAULTS[k]})  # equal formats, equal specs
        self.group = group
        self.code = code
        self.encoder = encoder
        self.rotate = bool(rotate)
        self.signs = bool(signs)
        self.norm_correction = bool(norm_correction)
        self.block = group or 32
        # a Viterbi pass updates 2**L states per value (subtract, multiply, add, compare) and the
        # tail-biting encoder makes two; greedy tries 2**k next states; plus normalize and pack
        search = 2 * 4 * self.trellis.n_states if encoder == "viterbi" else 3 * self.trellis.n_branch
        self.encode_flops_per_value = 4.0 + search

    # ---- geometry and cost ----------------------------------------------------------------------
    def bits_per_value_for(self, dim: int) -> float:
        self.check_dim(dim)
        return self.bits + 16 / self.group_for(dim)

    def rotation_flops(self, dim: int) -> float:
        return math.log2(self.group_for(dim)) + 1 if self.rotate else 0.0

    def _nominal_dim(self) -> int:
        return self.group or 128

    # ---- the code --------------------------------------------------------------------------------
    def shared_tables(self) -> dict[str, int]:
        """A table trained on a model (code=<name>): 2^L float32 reconstructions."""
        return {} if self.code in trellis_mod.CODES else {f"code={self.code}": 32 * self.trellis.n_states}

    @property
    def table(self) -> np.ndarray:
        """float32 [2**L] reconstructions for a unit-variance source (a trained table is built at first use)."""
        return _table(self.trellis, self.code)

    def levels(self, g: int) -> np.ndarray:
        """float32 [2**L] levels of the rotated domain, N(0, 1/g): table / sqrt(g)."""
        return _levels(self.trellis, self.code, g)

    def sign_vector(self, g: int) -> torch.Tensor:
        return random_signs(g) if self.signs else torch.ones(g)

    # ---- encode / decode -------------------------------------------------------------------------
    def trellis_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the trellis search sees: (v [G, g] float32, CPU: each rotated unit group times
        sqrt(g); norms [G] float64), G = groups in row order."""
        g = self.group_for(x.shape[-1])
        groups = x.detach().to("cpu", torch.float32).reshape(-1, g)
        norm = groups.double().square().sum(-1).sqrt()
        norm32 = norm.float()
        u = groups / torch.where(norm32 > 0, norm32, 1.0).unsqueeze(-1)
        if self.signs:
            u = u * random_signs(g)
        y = fwht(u) if self.rotate else u
        return (y * math.sqrt(g)).contiguous(), norm

    def _encode(self, x: torch.Tensor) -> Packed:
        from quantbench.kernels.formats import trellis_numba

        dim = x.shape[-1]
        g = self.group_for(dim)
        v, norm = self.trellis_inputs(x)
        states = trellis_numba.encode_paths(v.numpy(), self.table, self.trellis, self.encoder)
        codes = torch.from_numpy(trellis_numba.pack_stream(states, self.bits))
        if self.norm_correction:
            levels = torch.from_numpy(self.levels(g)[states]).double()
            norm = norm / levels.square().sum(-1).sqrt()
        if bool((norm > FP16_MAX).any()):
            raise FormatError(f"{self.spec}: a group's norm {float(norm.max()):.4g} exceeds the fp16 range")
        lead = tuple(x.shape[:-1])
        return Packed(self.spec, tuple(x.shape), {
            "codes": codes.reshape(*lead, dim * self.bits // 8).to(x.device),
            "norms": norm.float().half().reshape(*lead, dim // g).to(x.device),
        })

    def _decode(self, packed: Packed) -> torch.Tensor:
        g = self.group_for(packed.shape[-1])
        codes = packed["codes"].reshape(-1, g * self.bits // 8)
        states = stream_states_torch(codes, self.trellis, g)
        rotated = _levels_tensor(self.trellis, self.code, g, str(codes.device))[states] \
            * packed["norms"].reshape(-1, 1).float()
        if self.rotate:
            rotated = fwht(rotated)
        if self.signs:
            rotated = rotated * random_signs(g).to(rotated.device)
        return rotated.reshape(packed.shape)


def stream_states_torch(codes: torch.Tensor, trellis: trellis_mod.Trellis, T: int) -> torch.Tensor:
    """[G, T*k/8] uint8 -> [G, T] int64 states (torch twin of trellis.stream_states)."""
    k = trellis.k
    shifts = torch.arange(7, -1, -1, device=codes.device, dtype=torch.uint8)
    bits = ((codes[:, :, None] >> shifts) & 1).reshape(codes.shape[0], T, k).to(torch.int64)
    symbols = (bits << torch.arange(k - 1, -1, -1, device=codes.device)).sum(-1)
    states = torch.zeros_like(symbols)
    for back in range(-(-trellis.L // k)):  # value t - back's symbol, circularly
        states |= torch.roll(symbols, back, dims=1) << (k * back)
    return states & (trellis.n_states - 1)


@functools.lru_cache(maxsize=None)
def _table(trellis: trellis_mod.Trellis, code: str) -> np.ndarray:
    table = code_table(trellis, code)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=None)
def _levels(trellis: trellis_mod.Trellis, code: str, g: int) -> np.ndarray:
    levels = (_table(trellis, code).astype(np.float64) / math.sqrt(g)).astype(np.float32)
    levels.setflags(write=False)
    return levels


@functools.lru_cache(maxsize=None)
def _levels_tensor(trellis: trellis_mod.Trellis, code: str, g: int, device: str) -> torch.Tensor:
    return torch.tensor(_levels(trellis, code, g)).to(device)


@register
class Turbo2TCQ(_TurboTCQ):
    name = "turbo2_tcq"
    bits = 2


@register
class Turbo3TCQ(_TurboTCQ):
    name = "turbo3_tcq"
    bits = 3
