"""The model rewritten with other weights and the same function: SmoothQuant's scales and a
QuaRot-style Hadamard rotation folded in, so that the matmul inputs are easier to quantize.

Smoothing (Xiao et al. 2023, "SmoothQuant", arXiv 2211.10438): input channel j of a smoothed matmul
is divided by s_j and the weight's column j multiplied by it, x W^T = (x / s)(W diag(s))^T. Where
the input is a norm's output (q, k, v: the attention norm; gate, up: the ffn norm; output: the
final norm) 1/s is folded into that norm's weight; o's and down's inputs are divided at run time.

Rotation (Ashkboos et al. 2024, "QuaRot", arXiv 2404.00456): R = diag(signs) H / sqrt(g), the
randomized Hadamard matrix of kernels/formats/rotation.py on groups of g values (g the largest power
of two dividing the length: 64 for SmolLM2's 576, 512 for its 1536), orthonormal.
  residual stream: every norm's gain moves into the weights that read it (W diag(gain)), the norm
  weights become 1, and the stream is rotated: embedding table E R, readers W R (q, k, v, gate, up,
  output), writers R^T W (o, down). RMSNorm keeps the norm of a vector, so it commutes with R: the
  inputs of q, k, v, gate, up and output arrive rotated, with nothing run online.
  o's input: v's rows are rotated per head (R^T W_v, and v's bias) and o's columns per head (W_o R);
  attention mixes tokens, not channels, so its output arrives rotated. The V cache then holds
  rotated values, as in QuaRot: a quantized --kv format sees them too.
  down's input: rotated online (x R, one fast Walsh-Hadamard transform per token), its weight W R.
QuaRot itself rotates the whole hidden size (Hadamard matrices of sizes 12 * 2^n ... where no power
of two fits) and adds an online rotation across heads before o; neither is done here.
With both transforms, smoothing runs in the rotated basis (its scales come from rotated inputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quantbench.kernels.formats.rotation import rotate

NORM_OF = {"wqkv": "attn_norm", "w13": "ffn_norm"}


def output_name(config) -> str:
    """The output projection's weight name (the embedding table when tied)."""
    return "tok_embeddings" if config.tie_embeddings else "output"


def matmul_names(config) -> list[str]:
    names = [f"layers.{i}.{w}" for i in range(config.n_layers) for w in ("wqkv", "wo", "w13", "w2")]
    return names + [output_name(config)]


def norm_of(name: str, config) -> str | None:
    """The norm whose output is the matmul's input (None: o and down)."""
    if name == output_name(config):
        return "norm"
    layer, _, weight = name.rpartition(".")
    return f"{layer}.{NORM_OF[weight]}" if weight in NORM_OF else None


def rotation_group(length: int) -> int:
    """The largest power of two dividing `length`."""
    return length & -length


@dataclass
class InputChange:
    """One matmul's input in the folded model, from the original model's: x' = ((x * unfold) R) / scale."""

    unfold: torch.Tensor | None = None  # 1 / the norm gain moved into the weights (0 where the gain is 0)
    group: int | None = None  # rotation group
    scale: torch.Tensor | None = None  # smoothing scales
    online_rotation: bool = False  # R runs before the matmul (down), not upstream
    online_scale: bool = False  # 1/s runs before the matmul (o, down), not in a norm
    _run_scale: torch.Tensor | None = None

    def from_original(self, x: torch.Tensor) -> torch.Tensor:
        if self.unfold is not None:
            x = x * self.unfold.to(x)
        if self.group:
            x = rotate(x, self.group)
        return x if self.scale is None else x / self.scale.to(x)

    @property
    def runs_online(self) -> bool:
        return self.online_rotation or self.online_scale

    def at_run_time(self, x: torch.Tensor) -> torch.Tensor:
        if self.online_rotation:
            x = rotate(x, self.group)
        if self.online_scale:
            if self._run_scale is None or self._run_scale.device != x.device or self._run_scale.dtype != x.dtype:
                self._run_scale = self.scale.to(x.device, x.dtype)
            x = x / self._run_scale
        return x


class FoldedModel:
    """The transforms folded into a model's weights. `weight(name)` is a matmul weight as the folded
    model stores it, `norms` the norm weights (and qkv bias) that change, `table` the embedding
    lookup table when it changes, `at_run_time(name)` what runs on a matmul's input before it, and
    `hessian(name, H)` maps the Hessian of the original input to the folded one (GPTQ)."""

    def __init__(self, model, rotate_model: bool = False, scales: dict[str, torch.Tensor] | None = None):
        self.config = model.config
        self._stored = model.transformer.w
        self.rotated = rotate_model
        self.smoothed = sorted(scales or {})
        self.weights: dict[str, torch.Tensor] = {}
        self.norms: dict[str, torch.Tensor] = {}
        self.table: torch.Tensor | None = None
        self.changes: dict[str, InputChange] = {}
        if rotate_model:
            self._rotate()
        for name, s in (scales or {}).items():
            self._smooth(name, s.double())
        like = self._stored["norm"]
        self.weights = {n: w.to(like.device, like.dtype).contiguous() for n, w in self.weights.items()}
        self.norms = {n: w.to(like.device, like.dtype).contiguous() for n, w in self.norms.items()}
        if self.table is not None:
            self.table = self.table.to(like.device, like.dtype).contiguous()

    def weight(self, name: str) -> torch.Tensor:
        found = self.weights.get(name)
        return self._stored[name.replace(".", "_")] if found is None else found

    def at_run_time(self, name: str):
        change = self.changes.get(name)
        return change.at_run_time if change is not None and change.runs_online else None

    def hessian(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """M^T H M with x' = x M the input change of this matmul."""
        change = self.changes.get(name)
        if change is None:
            return h
        m = change.from_original(torch.eye(h.shape[0], dtype=torch.float64))
        return m.T @ h.double() @ m

    def changes_embeddings(self) -> bool:
        """Whether the lookup table and the output projection stop being one tensor."""
        return self.table is not None or (self.config.tie_embeddings and "tok_embeddings" in self.weights)

    def _original(self, name: str) -> torch.Tensor:
        return self._stored[name.replace(".", "_")].detach().to("cpu", torch.float64, copy=True)

    def _rotate(self) -> None:
        c = self.config
        d, head, hidden = rotation_group(c.dim), rotation_group(c.head_dim), rotation_group(c.hidden_dim)
        self.table = rotate(self._original("tok_embeddings"), d)
        q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        for i in range(c.n_layers):
            p = f"layers.{i}."
            gains = {norm: self._original(p + norm) for norm in NORM_OF.values()}
            wqkv = rotate(self._original(p + "wqkv") * gains["attn_norm"], d)
            wqkv[q + kv:] = _rotate_rows(wqkv[q + kv:], head)
            self.weights[p + "wqkv"] = wqkv
            if c.qkv_bias:
                bias = self._original(p + "bqkv")
                bias[q + kv:] = rotate(bias[q + kv:], head)
                self.norms[p + "bqkv"] = bias
            self.weights[p + "wo"] = _rotate_rows(rotate(self._original(p + "wo"), head), d)
            self.weights[p + "w13"] = rotate(self._original(p + "w13") * gains["ffn_norm"], d)
            self.weights[p + "w2"] = _rotate_rows(rotate(self._original(p + "w2"), hidden), d)
            self.changes[p + "wqkv"] = InputChange(unfold=_inverse(gains["attn_norm"]), group=d)
            self.changes[p + "wo"] = InputChange(group=head)
            self.changes[p + "w13"] = InputChange(unfold=_inverse(gains["ffn_norm"]), group=d)
            self.changes[p + "w2"] = InputChange(group=hidden, online_rotation=True)
            for norm, gain in gains.items():
                self.norms[p + norm] = torch.ones_like(gain)
        out, gain = output_name(c), self._original("norm")
        self.weights[out] = rotate(self._original(out) * gain, d)
        self.changes[out] = InputChange(unfold=_inverse(gain), group=d)
        self.norms["norm"] = torch.ones_like(gain)

    def _smooth(self, name: str, s: torch.Tensor) -> None:
        change = self.changes.setdefault(name, InputChange())
        change.scale = s
        self.weights[name] = (self.weights[name] if name in self.weights else self._original(name)) * s
        norm = norm_of(name, self.config)
        if norm is None:
            change.online_scale = True
        else:
            self.norms[norm] = (self.norms[norm] if norm in self.norms else self._original(norm)) / s


def _rotate_rows(w: torch.Tensor, group: int) -> torch.Tensor:
    """R^T W: each column rotated along the output dimension."""
    return rotate(w.T, group).T.contiguous()


def _inverse(gain: torch.Tensor) -> torch.Tensor:
    return torch.where(gain != 0, 1 / gain, torch.zeros_like(gain))
