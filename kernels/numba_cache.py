"""numba's disk cache kept honest across edits of the code a kernel inlines.

numba checks a cached function against its own source file only (modification time and size). The
kernels inline code from other modules: kernels/common's vector intrinsics, the attention row
decoders. After an edit there, a kernel loads from the cache as the old code, with no error, and
times or computes what is no longer in the tree (the attention kernels did, during the work on
issue 16). So the first import of quantbench.kernels fingerprints every source file of the package
and, when the fingerprint differs from the one stamped beside the caches, removes the package's
cached numba code (*.nbi, *.nbc) before any kernel loads it. Any edit of a kernel module thus
recompiles them all at their next use.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core.caching import CacheImpl

from quantbench.kernels.storage import write_atomic

PACKAGE = Path(__file__).resolve().parent
STAMP = "quantbench-kernel-sources.sha256"


def source_fingerprint(root: Path = PACKAGE) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_dir(py_file: Path) -> Path | None:
    """Where numba caches the functions of py_file: its first locator that applies, as numba picks."""
    for locator in CacheImpl._locator_classes:
        found = locator.from_function(source_fingerprint, str(py_file))  # a py_func only for its line number
        if found is not None:
            return Path(found.get_cache_path())
    return None


def drop_stale_caches(root: Path = PACKAGE) -> bool:
    """Removes root's cached numba code when its sources changed since the last stamp; True if it did."""
    stamp_dir = _cache_dir(root / "__init__.py")
    if stamp_dir is None:
        return False
    stamp = stamp_dir / STAMP
    fingerprint = source_fingerprint(root)
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return False
    sources = {path.parent: path for path in root.rglob("*.py")}  # one file a folder: numba caches by folder
    for folder in {_cache_dir(path) for path in sources.values()} - {None}:
        for cached in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
            cached.unlink(missing_ok=True)
    write_atomic(stamp, fingerprint.encode())
    return True
