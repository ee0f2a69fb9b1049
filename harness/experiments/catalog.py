"""Where experiments are found: the repository's suites/experiments/ (installed with the package),
or any folder a researcher keeps (--dir), and experiment files named directly."""
from __future__ import annotations

from pathlib import Path

from .errors import ExperimentError
from .spec import Experiment, load_experiment


def default_dir() -> Path:
    """quantbench/suites/experiments beside this package: the repository's folder in a checkout."""
    return Path(__file__).resolve().parents[2] / "suites" / "experiments"


def find(folder: str | Path | None = None) -> list[Experiment]:
    """Every *.toml in the folder, by file name; the same ID in two files is an error."""
    folder = Path(folder) if folder else default_dir()
    if not folder.is_dir():
        raise ExperimentError(f"experiment folder not found: {folder}")
    experiments = [load_experiment(path) for path in sorted(folder.glob("*.toml"))]
    seen: dict[str, Path] = {}
    for e in experiments:
        if e.id in seen:
            raise ExperimentError(f"experiment ID {e.id} is in both {seen[e.id]} and {e.path}")
        seen[e.id] = e.path
    return experiments


def resolve(references: list[str], folder: str | Path | None = None) -> list[tuple[str, Experiment]]:
    """(reference, experiment) for each file path or ID; IDs are looked up in the folder."""
    out, catalog = [], None
    for ref in references:
        path = Path(ref)
        if ref.endswith(".toml") or path.is_file():
            out.append((ref, load_experiment(path)))
            continue
        catalog = catalog if catalog is not None else {e.id: e for e in find(folder)}
        if ref not in catalog:
            where = folder or default_dir()
            known = ", ".join(sorted(catalog)) or "none"
            raise ExperimentError(f"no experiment {ref!r} in {where} (IDs there: {known})")
        out.append((ref, catalog[ref]))
    return out
