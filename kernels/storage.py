"""Where quantbench keeps its files, and how it writes them.

`results_dir()`: $QUANTBENCH_RESULTS, else results/ (relative to the working directory).
`cache_dir()`: $QUANTBENCH_CACHE, else the results folder's cache/. The cache holds what can be
recomputed (trained TCQ tables, the reference model's log-probabilities). Both are named here
once, at the bottom layer, because the formats cache their trained tables too.

`write_atomic`: a reader sees the old content or the new, never a torn one. The bytes go to a
temporary file beside the target, are fsynced, and the temporary is renamed over
the target. The file gets the permissions a plainly created file would (0666 less the umask):
mkstemp's private 0600 would hide shared results from the other users of a machine.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

RESULTS_ENV = "QUANTBENCH_RESULTS"
CACHE_ENV = "QUANTBENCH_CACHE"


def results_dir(root: str | Path | None = None) -> Path:
    """$QUANTBENCH_RESULTS, else results/ under `root` (default: the working directory)."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    return Path(root) / "results" if root is not None else Path("results")


def cache_dir() -> Path:
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else results_dir() / "cache"


def write_atomic(path: str | Path, *parts: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
