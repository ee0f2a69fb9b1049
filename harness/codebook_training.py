"""Codebooks trained on the model's own keys or values for the turbo formats (seed 001 EXP-0044,
product-aware codebook training; `quantbench train-codebook`).

Samples: the calibration sequences (kv_calibration.py: GPTQ's, the end of the default corpus) run
through the unquantized model; each cached K or V vector is normalized and rotated as turbo
encodes it (signs, FWHT; group = head_dim) and its coordinates scaled by sqrt(head_dim), so that
they are close to N(0, 1), the distribution the Lloyd-Max levels assume. Weights:
  none  every coordinate alike: the Lloyd-Max (GLA) levels of the model's own distribution;
  q2    K only: coordinate i of a key in layer l, KV head h weighs E[q_i^2], the mean square of the
        rotated queries that read it (the query heads of h, every calibration token). The score
        error of a key is sum_i q_i e_i, so its expected square is sum_i E[q_i^2] e_i^2 when the
        errors are uncorrelated: the Q^2-weighted GLA minimizes that, not the plain MSE.
The levels come from weighted Lloyd iterations from the Gaussian levels: cells at the midpoints,
each level the weighted mean of its cell.
"""
from __future__ import annotations

import json
import math
import shlex

import torch

from quantbench.harness.errors import UserError
from quantbench.kernels import formats
from quantbench.kernels.formats import lloyd_max
from quantbench.kernels.formats.codebook_tables import PACKAGE_DIR
from quantbench.kernels.storage import write_atomic

WEIGHTS = ("none", "q2")
ITERATIONS = 200
MAX_SAMPLES = 4_000_000
TCQ_L = 9  # the TCQ formats' default state bits
TCQ_SEQUENCES = 8192  # vectors of head_dim coordinates: 2^19 values at head_dim 64, the Gaussian plan's
TCQ_ITERATIONS = 30


def rotated(x: torch.Tensor, fmt) -> torch.Tensor:
    """x [..., g] -> its turbo rotation of the unit vector, times sqrt(g)."""
    g = x.shape[-1]
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return fmt._forward(unit, g) * math.sqrt(g)


def collect(model, side: str, weight: str, n_seq: int = 8, length: int = 256,
            subsample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, weights), float32 [N] each, from the calibration sequences, vector by vector
    (head_dim coordinates each); at most MAX_SAMPLES of them, drawn at random, if `subsample`."""
    from quantbench.harness.weights.calibration import calibration_tokens

    fmt = formats.get("turbo3")
    calib = calibration_tokens(model, n_seq=n_seq, seq_len=min(length, model.config.max_seq_len))
    values, weights = [], []
    group = model.config.n_heads // model.config.n_kv_heads
    with torch.no_grad():
        for sequence in calib.tokens:
            tokens = sequence[None, :].to(model.device)
            cache = model.new_cache(1, tokens.shape[1])
            queries = []
            attend = cache.attend

            def recording(q, k_store, v_store, n, mask, attend=attend):
                queries.append(q[0].float().cpu())  # [heads, n, d]
                return attend(q, k_store, v_store, n, mask)

            cache.attend = recording
            model.forward(tokens, cache, 0)
            for layer, pair in enumerate(cache.layers):
                x = pair[0 if side == "k" else 1].read(tokens.shape[1], torch.float32)[:, 0].cpu()  # [n, kvh, d]
                y = rotated(x, fmt)
                values.append(y.reshape(-1))
                if weight == "q2":
                    q = rotated(queries[layer], fmt) / math.sqrt(x.shape[-1])  # unit-norm queries, rotated
                    energy = q.square().mean(1).reshape(-1, group, x.shape[-1]).mean(1)  # [kvh, d]
                    weights.append(energy.expand_as(y).reshape(-1))
                else:
                    weights.append(torch.ones(y.numel()))
    samples, w = torch.cat(values), torch.cat(weights)
    if subsample and samples.numel() > MAX_SAMPLES:
        keep = torch.randperm(samples.numel(), generator=torch.Generator().manual_seed(0))[:MAX_SAMPLES]
        samples, w = samples[keep], w[keep]
    return samples, w / w.mean()


def weighted_lloyd(samples: torch.Tensor, weights: torch.Tensor, bits: int,
                   iterations: int = ITERATIONS) -> list[float]:
    """Sorted levels of the weighted Lloyd (GLA) quantizer of the samples, from the Gaussian levels."""
    levels = torch.tensor(lloyd_max.gaussian_levels(bits), dtype=torch.float64)
    x, w = samples.double(), weights.double()
    for _ in range(iterations):
        cells = torch.bucketize(x, (levels[1:] + levels[:-1]) / 2)
        mass = torch.zeros_like(levels).index_add_(0, cells, w)
        moment = torch.zeros_like(levels).index_add_(0, cells, w * x)
        levels = torch.where(mass > 0, moment / mass.clamp_min(1e-300), levels).sort().values
    return levels.tolist()


def weighted_mse(samples: torch.Tensor, weights: torch.Tensor, levels) -> float:
    lv = torch.tensor(levels, dtype=torch.float64)
    x = samples.double()
    nearest = lv[torch.bucketize(x, (lv[1:] + lv[:-1]) / 2)]
    return float((weights.double() * (x - nearest).square()).mean())


def train(model, side: str, bits: int, weight: str, name: str, out_dir=None, model_label: str = "",
          tcq: bool = False) -> dict:
    """Train, write <name>.json to out_dir (default: the package's codebooks/) and return the table.
    `tcq`: a trellis table of turbo<bits>_tcq (L = 9), fine-tuned from the Gaussian one (train_tcq)."""
    if tcq:
        return train_tcq(model, side, bits, name, out_dir, model_label)
    if side not in ("k", "v"):
        raise UserError(f"--side {side!r}: k or v")
    if weight not in WEIGHTS:
        raise UserError(f"--weight {weight!r}: one of {', '.join(WEIGHTS)}")
    if weight == "q2" and side != "k":
        raise UserError("--weight q2 weighs a key's coordinates by the queries that read it: use it with --side k")
    if bits not in (2, 3, 4):
        raise UserError(f"--bits {bits}: the turbo formats have 2, 3 or 4 bits")
    samples, w = collect(model, side, weight)
    levels = weighted_lloyd(samples, w, bits)
    gaussian = list(lloyd_max.gaussian_levels(bits))
    command = ["quantbench", "train-codebook", "--side", side, "--bits", str(bits), "--weight", weight, "--name", name]
    table = {"name": name, "bits": bits, "levels": levels, "side": side, "weight": weight,
             "model": model_label or (model.config.name or "model"), "samples": int(samples.numel()),
             "weighted_mse": weighted_mse(samples, w, levels),
             "gaussian_weighted_mse": weighted_mse(samples, w, gaussian),
             "command": shlex.join(command + (["-m", model_label] if model_label else []))}
    return write_table(table, name, out_dir)


def write_table(table: dict, name: str, out_dir) -> dict:
    folder = PACKAGE_DIR if out_dir is None else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{name}.json", (json.dumps(table, indent=1) + "\n").encode("utf-8"))
    return {**table, "path": str(folder / f"{name}.json")}


def train_tcq(model, side: str, bits: int, name: str, out_dir=None, model_label: str = "") -> dict:
    """A TCQ table fine-tuned on the model's rotated K or V (seed 001 EXP-0040's fine-tuned tables):
    Lloyd passes over trellis paths (formats/trellis_training.py) on TCQ_SEQUENCES of its vectors,
    each a sequence of head_dim coordinates, from the Gaussian-trained table."""
    from quantbench.kernels.formats.trellis import Trellis
    from quantbench.kernels.formats.trellis_training import lloyd_over_paths, trained_table

    if bits not in (2, 3):
        raise UserError(f"--bits {bits}: the TCQ formats have 2 or 3 bits")
    samples, _ = collect(model, side, "none", subsample=False)
    sequences = samples.reshape(-1, model.config.head_dim)
    keep = torch.randperm(sequences.shape[0], generator=torch.Generator().manual_seed(0))[:TCQ_SEQUENCES]
    x = sequences[keep].contiguous().numpy()
    trellis = Trellis(bits, TCQ_L)
    start = trained_table(trellis)
    table = lloyd_over_paths(x, trellis, TCQ_ITERATIONS, start)
    command = ["quantbench", "train-codebook", "--tcq", "--side", side, "--bits", str(bits), "--name", name]
    return write_table({"name": name, "kind": "tcq", "k": bits, "L": TCQ_L, "table": [float(v) for v in table],
                        "side": side, "model": model_label or (model.config.name or "model"),
                        "sequences": int(x.shape[0]), "iterations": TCQ_ITERATIONS,
                        "command": shlex.join(command + (["-m", model_label] if model_label else []))},
                       name, out_dir)
