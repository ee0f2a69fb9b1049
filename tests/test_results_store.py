import json
import os

import pytest

from quantbench.harness import results
from quantbench.kernels import storage


def _record(value=1.0, metric="time"):
    return results.make_record(op="dequantize", format="q4_0", backend="torch", variant="reference",
                               case="rows=1,dim=32", metric=metric, value=value, unit="s",
                               direction="lower", samples=[value], command="quantbench bench --op dequantize")


def test_append_then_load_roundtrip(tmp_path):
    path = tmp_path / "r.jsonl"
    results.append([_record(1.0)], path)
    results.append([_record(2.0), _record(3.0, "gbps")], path)
    frame = results.load(path)
    assert list(frame["value"]) == [1.0, 2.0, 3.0]
    assert set(results.FIELDS) <= set(frame.columns)
    assert frame["command"][0] == "quantbench bench --op dequantize"
    assert "commit" in frame.columns and "device" in frame.columns


def test_record_carries_environment_and_command():
    rec = _record()
    assert {"commit", "dirty", "device", "versions", "time"} <= set(rec["env"])
    assert rec["env"]["versions"]["torch"]


def test_default_path_is_under_results_dir(tmp_path):
    path = results.append([_record()])
    assert path.parent == results.results_dir()
    assert path.suffix == ".jsonl"


def test_corrupt_file_is_reported_and_left_untouched(tmp_path):
    path = tmp_path / "r.jsonl"
    results.append([_record()], path)
    corrupt = path.read_text() + '{"op": "quantize", "form'
    path.write_text(corrupt)
    with pytest.raises(results.ResultsError, match=r"r.jsonl:2: corrupt record"):
        results.load(path)
    with pytest.raises(results.ResultsError, match="corrupt"):
        results.append([_record()], path)
    assert path.read_text() == corrupt


def test_half_written_last_line_refuses_append(tmp_path):
    path = tmp_path / "r.jsonl"
    line = json.dumps(_record(), sort_keys=True)
    path.write_text(line)  # valid JSON but no newline: the writer died mid-file
    with pytest.raises(results.ResultsError, match="incomplete"):
        results.append([_record()], path)
    assert path.read_text() == line


def test_missing_file_and_bad_records_are_clear_errors(tmp_path):
    with pytest.raises(results.ResultsError, match="not found"):
        results.load(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "x"}\n')
    with pytest.raises(results.ResultsError, match="missing field"):
        results.load(bad)
    with pytest.raises(ValueError, match="direction"):
        results.make_record(op="x", format="f32", backend="b", variant="v", case="c", metric="m",
                            value=1, unit="s", direction="sideways")
    with pytest.raises(ValueError, match="not finite"):
        results.make_record(op="x", format="f32", backend="b", variant="v", case="c", metric="m",
                            value=float("nan"), unit="s", direction="lower")


def test_failed_write_keeps_old_contents(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    results.append([_record(1.0)], path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(results.ResultsError, match="cannot write results: disk full"):
        results.append([_record(2.0)], path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".r.jsonl.*.tmp"))


def test_load_folder_concatenates_files(tmp_path):
    results.append([_record(1.0)], tmp_path / "a.jsonl")
    results.append([_record(2.0)], tmp_path / "b.jsonl")
    assert sorted(results.load(tmp_path)["value"]) == [1.0, 2.0]


def test_results_files_get_the_permissions_of_a_plain_file(tmp_path):
    path = tmp_path / "r.jsonl"
    old = os.umask(0o022)
    try:
        results.append([_record(1.0)], path)
        results.append([_record(2.0)], path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
