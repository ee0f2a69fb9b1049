"""Trained codebooks (harness/codebook_training.py, `quantbench train-codebook`):
- turbo levels (option `levels=<name>`: turbo3:levels=smollm2-k3): a scalar quantizer of unit
  variance trained on a model's own rotated keys or values, in place of the Lloyd-Max levels of
  N(0, 1); fields `bits` and `levels` (sorted, 2^bits floats);
- TCQ tables (option `code=<name>`: turbo3_tcq:code=smollm2-tcq3-k): fields `k`, `L` and `table`
  (2^L floats), in place of the table trained on Gaussian data.
A table is a JSON file <name>.json in $QUANTBENCH_CODEBOOKS, else in this package's codebooks/
folder; the trainer adds where it comes from and the command that remakes it.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path

import torch

from quantbench.kernels.errors import FormatError

GAUSSIAN = "gaussian"
ENV = "QUANTBENCH_CODEBOOKS"
PACKAGE_DIR = Path(__file__).parent / "codebooks"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def table_dirs() -> list[Path]:
    own = os.environ.get(ENV)
    return ([Path(own)] if own else []) + [PACKAGE_DIR]


def table_path(name: str) -> Path:
    if not _NAME.match(name):
        raise FormatError(f"codebook name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
    for folder in table_dirs():
        if (folder / f"{name}.json").is_file():
            return folder / f"{name}.json"
    raise FormatError(f"no trained codebook {name!r} (looked for {name}.json in "
                      f"{', '.join(str(d) for d in table_dirs())}; `quantbench train-codebook` makes one)")


@functools.lru_cache(maxsize=None)
def trained_levels(name: str, bits: int) -> tuple[float, ...]:
    """The unit-variance levels of table `name`, checked: 2^bits sorted finite floats."""
    path = table_path(name)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        levels = tuple(float(v) for v in table["levels"])
        table_bits = int(table["bits"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"codebook {path}: not a table of `bits` and `levels` ({exc})") from None
    if table_bits != bits:
        raise FormatError(f"codebook {name!r} has {table_bits}-bit levels; this format needs {bits}")
    if len(levels) != 1 << bits or not all(math.isfinite(v) for v in levels) or list(levels) != sorted(set(levels)):
        raise FormatError(f"codebook {path}: needs {1 << bits} distinct sorted finite levels")
    return levels


def read_table(name: str) -> tuple[Path, dict]:
    path = table_path(name)
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"codebook {path}: not a JSON table ({exc})") from None


@functools.lru_cache(maxsize=None)
def trained_trellis_table(name: str, k: int, L: int) -> tuple[float, ...]:
    """The 2^L reconstruction values (unit variance) of TCQ table `name`, for k bits and L state bits."""
    path, table = read_table(name)
    try:
        values = tuple(float(v) for v in table["table"])
        shape = int(table["k"]), int(table["L"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"codebook {path}: not a TCQ table of `k`, `L` and `table` ({exc})") from None
    if shape != (k, L):
        raise FormatError(f"codebook {name!r} is a TCQ table for k={shape[0]}, L={shape[1]}; this format is "
                          f"k={k}, L={L}")
    if len(values) != 1 << L or not all(math.isfinite(v) for v in values):
        raise FormatError(f"codebook {path}: needs {1 << L} finite values")
    return values


def levels_tensor(name: str, bits: int, sigma: float) -> torch.Tensor:
    return torch.tensor(trained_levels(name, bits), dtype=torch.float64).mul(sigma).to(torch.float32)


def boundaries_tensor(name: str, bits: int, sigma: float) -> torch.Tensor:
    lv = torch.tensor(trained_levels(name, bits), dtype=torch.float64)
    return ((lv[1:] + lv[:-1]) / 2).mul(sigma).to(torch.float32)
