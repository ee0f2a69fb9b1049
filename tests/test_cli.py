import json

from quantbench.harness import results
from quantbench.harness.cli import main


def test_list_shows_formats_variants_and_availability(capsys):
    assert main(["list", "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert '"format": "q4_0"' in out or '"format": "f32"' in out
    assert "reference" in out


def test_bench_prints_and_stores_records(capsys, tmp_path):
    path = tmp_path / "r.jsonl"
    code = main(["bench", "--op", "fwht", "--shape", "rows=32,dim=64", "--budget", "0.01", "-o", "json",
                 "--results", str(path)])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["status"] == "ok" and rows[0]["gbps"] > 0
    frame = results.load(path)
    assert set(frame["metric"]) == {"time", "gbps", "pct_peak", "copy_gbps"}
    assert frame["command"].iloc[0] == (f"quantbench bench --op fwht --shape rows=32,dim=64 --budget 0.01 "
                                        f"-o json --results {path}")


def test_bench_bad_input_exits_2_with_message(capsys):
    assert main(["bench", "--op", "nope"]) == 2
    assert "unknown op 'nope'" in capsys.readouterr().err
    assert main(["bench", "--op", "fwht", "--shape", "rows=-1,dim=64", "--no-store"]) == 2
    assert "expected positive integers" in capsys.readouterr().err
    assert main(["bench", "--op", "dequantize", "--format", "nosuchformat", "--no-store"]) == 2
    assert "unknown format 'nosuchformat'" in capsys.readouterr().err


def test_formats_table_csv(capsys):
    assert main(["formats", "--format", "f16,bf16", "--rows", "64", "--dim", "64", "-o", "csv", "--no-store"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "format,bits_per_value,nmse,lloyd_max,shannon,nmse_over_shannon"
    assert len(lines) == 3
