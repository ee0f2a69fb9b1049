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
    ({"contention": "busy"}, "field contention"),
    ({"contention": [3]}, "field contention"),
    ({"env": {"cpu_model": 5}}, "field env.cpu_model"),
    ({"env": {"cpu_flags": "avx2"}}, "field env.cpu_flags"),
    ({"env": {"threads": {"torch": 0}}}, "field env.threads"),
    ({"env": {"threads": 2}}, "field env.threads"),
    ({"env": {"load_avg": "high"}}, "field env.load_avg"),
    ({"env": {"load_avg": -1.0}}, "field env.load_avg"),
])
def test_malformed_records_are_named_with_file_line_and_field(tmp_path, capsys, change, field):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good_record()) + "\n" + json.dumps(good_record(**change)) + "\n")
    with pytest.raises(ResultsError, match=rf"{path}:2: {field}"):
        results.read_records(path)
    assert main(["compare", str(path), str(path)]) == 2
    assert f"{path}:2: {field}" in capsys.readouterr().err


def test_records_without_the_newer_fields_and_with_them_are_accepted():
    results.validate(good_record())  # an older record: no contention, no cpu or thread fields in env
    results.validate(good_record(contention=["load 2.9 on 2 cores"], env={
        "cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "avx512f"], "threads": {"torch": 1, "numba": 2, "cores": 2},
        "load_avg": 0.5}))


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
