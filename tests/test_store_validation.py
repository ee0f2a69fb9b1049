"""The results store refuses malformed records with file, line and field; appends through a
symlink reach its target; a temporary left by a killed writer is removed by the next append."""
import json
import math

import pytest

from quantbench.harness import results
from quantbench.harness.cli import main
from quantbench.harness.results import ResultsError


def good_record(**change):
    rec = results.make_record(op="fwht", format="f32", backend="torch", variant="reference", case="rows=8,dim=64",
                              metric="time", value=1e-6, unit="s", direction="lower", samples=[1e-6, 2e-6],
                              env={"commit": "0" * 40, "dirty": False}, command="quantbench bench")
    rec.update(change)
    return rec


@pytest.mark.parametrize("change, field", [
    ({"value": "fast"}, "field value"),
    ({"value": None}, "field value"),
    ({"value": math.nan}, "field value"),
    ({"value": True}, "field value"),
    ({"env": 5}, "field env"),
    ({"samples": "abc"}, "field samples"),
    ({"samples": [1.0, math.inf]}, "field samples"),
    ({"op": 7}, "field op"),
    ({"rounds": ["x"]}, "field rounds"),
    ({"direction": "sideways"}, "field direction"),
])
def test_malformed_records_are_named_with_file_line_and_field(tmp_path, capsys, change, field):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good_record()) + "\n" + json.dumps(good_record(**change)) + "\n")
    with pytest.raises(ResultsError, match=rf"{path}:2: {field}"):
        results.read_records(path)
    assert main(["compare", str(path), str(path)]) == 2
    assert f"{path}:2: {field}" in capsys.readouterr().err


def test_append_through_a_symlink_grows_its_target(tmp_path):
    target = tmp_path / "target.jsonl"
    link = tmp_path / "link.jsonl"
    results.append([good_record()], target)
    link.symlink_to(target)
    results.append([good_record(value=2e-6)], link)
    assert link.is_symlink()
    assert [r["value"] for r in results.read_records(target)] == [1e-6, 2e-6]


def test_a_temporary_left_by_a_killed_writer_is_removed(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    results.append([good_record()], path)
    stale = tmp_path / ".r.jsonl.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    results.append([good_record(value=2e-6)], path)
    assert not stale.exists()
    assert ".r.jsonl.abc123.tmp" in capsys.readouterr().err
    assert len(results.read_records(path)) == 2
