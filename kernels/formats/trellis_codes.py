"""The reconstruction table of a trellis, by code name: `random` (seeded i.i.d. N(0, 1)), `hash`
(computed from the state, no memory), `trained` (Lloyd over trellis paths, formats/trellis_training.py)."""
from __future__ import annotations

import numpy as np

from quantbench.kernels.errors import FormatError
from quantbench.kernels.formats.trellis import CODES, Trellis, hash_code, random_code
from quantbench.kernels.formats.trellis_training import trained_table


def code_table(trellis: Trellis, code: str) -> np.ndarray:
    """float32 table of 2**L reconstruction values for a unit-variance Gaussian source."""
    if code == "random":
        return random_code(trellis.L)
    if code == "hash":
        return hash_code(np.arange(trellis.n_states))
    if code == "trained":
        return trained_table(trellis)
    raise FormatError(f"trellis: unknown code {code!r}; choose one of {', '.join(CODES)}")
