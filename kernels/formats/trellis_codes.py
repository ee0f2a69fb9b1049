"""The reconstruction table of a trellis, by code name: `random` (seeded i.i.d. N(0, 1)), `hash`
(computed from the state, no memory), `trained` (Lloyd over trellis paths on Gaussian data,
formats/trellis_training.py), or the name of a table trained on a model's own data
(formats/codebook_tables.py)."""
from __future__ import annotations

import numpy as np

from quantbench.kernels.formats.codebook_tables import trained_trellis_table
from quantbench.kernels.formats.trellis import Trellis, hash_code, random_code
from quantbench.kernels.formats.trellis_training import trained_table


def code_table(trellis: Trellis, code: str) -> np.ndarray:
    """float32 table of 2**L reconstruction values for a unit-variance Gaussian source."""
    if code == "random":
        return random_code(trellis.L)
    if code == "hash":
        return hash_code(np.arange(trellis.n_states))
    if code == "trained":
        return trained_table(trellis)
    return np.asarray(trained_trellis_table(code, trellis.k, trellis.L), dtype=np.float32)
