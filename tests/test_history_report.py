"""`quantbench history` (a metric over commits, table + PNG) and `quantbench report` (tables + Pareto)."""
import json

from quantbench.harness import report, results
from quantbench.harness.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(op, fmt, metric, value, commit, time, direction="lower", unit="nats", case="ctx64", samples=()):
    env = {"commit": commit * 40 if len(commit) == 1 else commit, "dirty": False, "device": "test cpu",
           "time": time}
    return results.make_record(op=op, format=fmt, backend="torch", variant="dequant_sdpa", case=case, metric=metric,
                               value=value, unit=unit, direction=direction, samples=samples, env=env, command="test")


def write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def decode_history(folder):
    # three commits, stored out of time order; a re-run of commit b later in the day replaces its value
    write(folder / "cccccccccccc.jsonl", [record("decode", "turbo3", "decode_tok_s", 30.0, "c", "2025-01-03T00:00:00",
                                                 "higher", "tok/s", "n8,d0")])
    write(folder / "aaaaaaaaaaaa.jsonl", [record("decode", "turbo3", "decode_tok_s", 20.0, "a", "2025-01-01T00:00:00",
                                                 "higher", "tok/s", "n8,d0"),
                                          record("decode", "f16", "decode_tok_s", 50.0, "a", "2025-01-01T00:00:00",
                                                 "higher", "tok/s", "n8,d0")])
    write(folder / "bbbbbbbbbbbb.jsonl", [record("decode", "turbo3", "decode_tok_s", 22.0, "b", "2025-01-02T00:00:00",
                                                 "higher", "tok/s", "n8,d0"),
                                          record("decode", "turbo3", "decode_tok_s", 25.0, "b", "2025-01-02T06:00:00",
                                                 "higher", "tok/s", "n8,d0")])


def test_history_prints_the_metric_over_commits_and_plots_it(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "results"
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(folder))
    decode_history(folder)
    assert main(["history", "--metric", "decode_tok_s", "--format", "turbo3", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["commit"], r["value"]) for r in rows] == [("aaaaaaaaaaaa", 20.0), ("bbbbbbbbbbbb", 25.0),
                                                         ("cccccccccccc", 30.0)]
    png = folder / "history-decode_tok_s-turbo3.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    custom = tmp_path / "plots" / "all.png"
    assert main(["history", "--metric", "decode_tok_s", "--plot", str(custom), "-o", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4  # header, turbo3 x 3, f16 x 1
    assert custom.read_bytes()[:8] == PNG_MAGIC


def test_history_explains_what_is_there_when_nothing_matches(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "results"
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(folder))
    decode_history(folder)
    assert main(["history", "--metric", "kld_mean"]) == 2
    assert "no records of metric 'kld_mean'; metrics in the results: decode_tok_s" in capsys.readouterr().err
    assert main(["history", "--metric", "decode_tok_s", "--format", "q4_0"]) == 2
    assert "formats with decode_tok_s: f16, turbo3" in capsys.readouterr().err
    assert main(["history", "--metric", "time", "--results", str(tmp_path / "missing")]) == 2
    assert "results file not found" in capsys.readouterr().err


def quality_records(commit="a", time="2025-01-01T00:00:00"):
    out = []
    # (format, bits, kld): q4_1 is dominated (more bits and worse than q4_0), so it is off the front
    for fmt, bits, kld in (("f16", 16.0, 1e-6), ("q8_0", 8.5, 4e-4), ("q4_1", 5.0, 0.2), ("q4_0", 4.5, 0.15),
                           ("turbo3", 3.25, 0.3), ("turbo2", 2.25, 1.3)):
        out += [record("quality", fmt, "kld_mean", kld, commit, time, samples=[kld] * 3),
                record("quality", fmt, "kld_mean_err", kld / 10, commit, time),
                record("quality", fmt, "kld_p99", kld * 4, commit, time),
                record("quality", fmt, "bits_per_value", bits, commit, time, unit="bits")]
    return out


def test_report_writes_pareto_plot_and_latest_tables(tmp_path, capsys):
    folder = tmp_path / "results"
    decode_history(folder)
    write(folder / "aaaaaaaaaaaa-dirty.jsonl", quality_records())
    out = tmp_path / "out"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert (out / "pareto.png").read_bytes()[:8] == PNG_MAGIC
    assert "Pareto front (no format is both smaller and better): turbo2, turbo3, q4_0, q8_0, f16." in md
    assert "| q4_1 | 5 | 0.2 ± 0.02 | 0.8 |  |" in md
    assert md.index("## quality") < md.index("## decode")
    assert "| turbo3 | torch/dequant_sdpa | n8,d0 | 30 | cccccccccccc |" in md  # newest record of the row
    assert "decode_tok_s [tok/s] ↑" in md and "kld_mean [nats] ↓" in md


def test_report_without_quality_records_has_tables_but_no_plot(tmp_path):
    folder = tmp_path / "results"
    decode_history(folder)
    md, png = report.write_report(results.read_records(folder), tmp_path / "out")
    assert png is None and not (tmp_path / "out" / "pareto.png").exists()
    assert "No `quality` records" in md.read_text()


def test_report_plots_the_setting_with_most_formats(tmp_path):
    records = quality_records()
    records.append(record("quality", "turbo4", "kld_mean", 0.05, "b", "2025-02-01T00:00:00", case="ctx512"))
    setting, points = report.pareto_points(report.latest_by_key(records))
    assert setting == ("torch", "dequant_sdpa", "ctx64") and len(points) == 6
