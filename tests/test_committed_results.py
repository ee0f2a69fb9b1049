"""The records committed under results/ are ones a reader can trust: each was measured on a
clean checkout of the commit it names (no `-dirty` file, no record with env.dirty), carries the
command that reproduces it, and reads back through the results store."""
from pathlib import Path

from quantbench.harness import results

RESULTS = Path(__file__).resolve().parents[1] / "results"


def committed_files() -> list[Path]:
    return sorted(RESULTS.glob("*.jsonl"))


def test_no_results_from_a_dirty_tree_are_committed():
    assert not [p.name for p in committed_files() if p.stem.endswith("-dirty")]
    for path in committed_files():
        dirty = [r for r in results.read_records(path) if r["env"].get("dirty")]
        assert not dirty, f"{path.name}: {len(dirty)} records measured on a dirty tree"


def test_every_committed_record_names_its_commit_and_command():
    for path in committed_files():
        for record in results.read_records(path):
            assert record["env"]["commit"][:12] == path.stem[:12], path.name
            assert record["command"].startswith("quantbench "), path.name
