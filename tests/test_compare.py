"""`quantbench compare`: statistics, outcomes per row, thresholds in each metric's direction, errors."""
import json
import math
import random
import statistics

import pytest

from quantbench.harness import compare, results
from quantbench.harness.cli import main
from quantbench.harness.stats_tests import bootstrap_ratio, mann_whitney_u, ranks

ENV = {"commit": "0" * 40, "dirty": False, "device": "test cpu", "time": "2025-01-01T00:00:00+00:00"}


def record(metric, value, samples=(), direction="lower", unit="s", fmt="q4_0", op="dequantize", variant="reference"):
    return results.make_record(op=op, format=fmt, backend="torch", variant=variant, case="rows=64,dim=64",
                               metric=metric, value=value, unit=unit, direction=direction, samples=samples,
                               env=dict(ENV), command="test")


def time_record(center, spread, n=30, seed=0, **kw):
    rng = random.Random(seed)
    samples = [center * (1 + rng.gauss(0, spread)) for _ in range(n)]
    return record("time", statistics.median(samples), samples, **kw)


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_compare(tmp_path, base, new, *args):
    b = write(tmp_path / "base.jsonl", base)
    n = write(tmp_path / "new.jsonl", new)
    return main(["compare", str(b), str(n), *args])


def one_row(base, new, fail=None, default="5%"):
    sides = [compare.Side(label, None, compare.latest_by_key(recs)) for label, recs in (("b", base), ("n", new))]
    fail = {k: compare.parse_threshold(v) for k, v in (fail or {}).items()}
    c = compare.compare(*sides, fail, compare.parse_threshold(default))
    assert len(c.rows) == 1
    return c.rows[0]


# ---- statistics ------------------------------------------------------------------------------
def test_mann_whitney_matches_the_normal_approximation_by_hand():
    # U = 0 for complete separation of 5 and 5; sigma^2 = 5*5*11/12; continuity-corrected z
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    z = (12.5 - 0.5) / math.sqrt(25 * 11 / 12)
    assert u == 0 and p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    # ties shrink the variance: ties {1:2, 2:3, 3:3, 4:2} -> sum(t^3 - t) = 6 + 24 + 24 + 6 = 60
    u, p = mann_whitney_u([1, 1, 2, 2, 3], [2, 3, 3, 4, 4])
    var = 25 / 12 * (11 - 60 / 90)
    assert u == 3 and p == pytest.approx(math.erfc((12.5 - 3 - 0.5) / math.sqrt(var) / math.sqrt(2)), rel=1e-12)
    assert mann_whitney_u([2, 2], [2, 2]) == (2.0, 1.0)
    assert ranks([3, 1, 3, 2]) == [3.5, 1, 3.5, 2]


def test_bootstrap_interval_is_seeded_and_covers_the_ratio():
    rng = random.Random(3)
    base = [1 + rng.gauss(0, 0.05) for _ in range(40)]
    new = [2 * (1 + rng.gauss(0, 0.05)) for _ in range(40)]
    lo, hi = bootstrap_ratio(base, new)
    assert lo < 2 < hi and hi - lo < 0.2
    assert bootstrap_ratio(base, new) == (lo, hi)
    lo_mean, hi_mean = bootstrap_ratio(base, new, "mean")
    assert lo_mean < 2 < hi_mean


# ---- outcomes --------------------------------------------------------------------------------
def test_injected_2x_slowdown_is_a_regression_and_exits_1(tmp_path, capsys):
    base = [time_record(1e-3, 0.03, seed=1)]
    new = [time_record(2e-3, 0.03, seed=2)]
    assert run_compare(tmp_path, base, new, "--fail", "time:+5%") == 1
    out = capsys.readouterr().out
    assert "**REGRESSION**" in out and "| **regressed** | dequantize | q4_0 | torch/reference |" in out
    row = one_row(base, new, {"time": "+5%"})
    assert row.test == "mann-whitney" and row.p < 1e-6 and row.interval[0] > 0.8


def test_speedup_is_improved_and_exits_0(tmp_path):
    base = [time_record(2e-3, 0.03, seed=1)]
    new = [time_record(1e-3, 0.03, seed=2)]
    assert run_compare(tmp_path, base, new, "--fail", "time:+5%") == 0
    assert one_row(base, new).outcome == "improved"


def test_difference_inside_the_noise_is_inconclusive_not_regressed(tmp_path):
    base = [time_record(1e-3, 0.25, n=8, seed=5)]
    new = [time_record(1.07e-3, 0.25, n=8, seed=6)]
    row = one_row(base, new, {"time": "+5%"})
    assert row.outcome == "inconclusive" and row.p > 0.05
    assert run_compare(tmp_path, base, new, "--fail", "time:+5%") == 0


def test_same_distribution_with_little_noise_is_unchanged():
    row = one_row([time_record(1e-3, 0.005, seed=1)], [time_record(1e-3, 0.005, seed=2)], {"time": "+5%"})
    assert row.outcome == "unchanged"


def test_kld_increase_beyond_its_error_is_flagged(tmp_path, capsys):
    base = [record("kld_mean", 0.100, unit="nats", op="quality", variant="dequant_sdpa"),
            record("kld_mean_err", 0.002, unit="nats", op="quality", variant="dequant_sdpa")]
    new = [record("kld_mean", 0.130, unit="nats", op="quality", variant="dequant_sdpa"),
           record("kld_mean_err", 0.002, unit="nats", op="quality", variant="dequant_sdpa")]
    report = tmp_path / "report" / "compare.md"
    assert run_compare(tmp_path, base, new, "--fail", "kld_mean:+10%", "--report", str(report)) == 1
    assert "| **regressed** | quality | q4_0 |" in report.read_text()
    row = one_row(base, new, {"kld_mean": "+10%"})
    assert row.test == "value±err" and row.change == pytest.approx(0.3)


def test_kld_increase_within_its_error_is_inconclusive():
    base = [record("kld_mean", 0.100, op="quality"), record("kld_mean_err", 0.010, op="quality")]
    new = [record("kld_mean", 0.112, op="quality"), record("kld_mean_err", 0.010, op="quality")]
    assert one_row(base, new, {"kld_mean": "+10%"}).outcome == "inconclusive"


def test_value_without_uncertainty_is_compared_by_value_with_absolute_threshold():
    base = [record("kld_p99", 0.50, op="quality")]
    assert one_row(base, [record("kld_p99", 0.52, op="quality")], {"kld_p99": "+0.05"}).outcome == "unchanged"
    row = one_row(base, [record("kld_p99", 0.60, op="quality")], {"kld_p99": "+0.05"})
    assert row.outcome == "regressed" and row.change == pytest.approx(0.10) and row.test == "value"


def test_higher_is_better_metric_regresses_downwards(tmp_path, capsys):
    def tok(v, seed):
        rng = random.Random(seed)
        s = [v * (1 + rng.gauss(0, 0.01)) for _ in range(9)]
        return record("decode_tok_s", sorted(s)[4], s, direction="higher", unit="tok/s", op="decode")
    assert one_row([tok(100, 1)], [tok(80, 2)], {"decode_tok_s": "-5%"}).outcome == "regressed"
    assert one_row([tok(100, 1)], [tok(120, 2)], {"decode_tok_s": "-5%"}).outcome == "improved"
    assert run_compare(tmp_path, [tok(100, 1)], [tok(80, 2)], "--fail", "decode_tok_s:+5%") == 2
    assert "decode_tok_s is higher-is-better, so a regression is a decrease" in capsys.readouterr().err


def test_gbps_takes_the_test_of_its_time_samples():
    base = [time_record(1e-3, 0.02, seed=1), record("gbps", 10.0, direction="higher", unit="GB/s")]
    new = [time_record(2e-3, 0.02, seed=2), record("gbps", 5.0, direction="higher", unit="GB/s")]
    sides = [compare.Side(n, None, compare.latest_by_key(r)) for n, r in (("b", base), ("n", new))]
    assert {r.metric for r in compare.compare(*sides).rows} == {"time"}  # gbps only when asked for
    fail = {"time": compare.parse_threshold("+5%"), "gbps": compare.parse_threshold("-5%")}
    rows = {r.metric: r for r in compare.compare(*sides, fail=fail).rows}
    assert rows["gbps"].test == "mann-whitney (time)" and rows["gbps"].outcome == "regressed"
    lo, hi = rows["gbps"].interval
    assert -0.6 < lo < hi < -0.4


def test_newest_record_of_a_row_wins_and_err_rows_are_not_compared():
    old = record("kld_mean", 0.5, op="quality")
    newer = dict(record("kld_mean", 0.1, op="quality"), env=dict(ENV, time="2025-02-01T00:00:00+00:00"))
    err = record("kld_mean_err", 0.001, op="quality")
    c = compare.compare(compare.Side("b", None, compare.latest_by_key([newer, old, err])),
                        compare.Side("n", None, compare.latest_by_key([old, newer, err])))
    assert [(r.metric, r.base, r.outcome) for r in c.rows] == [("kld_mean", 0.1, "unchanged")]


# ---- inputs ----------------------------------------------------------------------------------
def test_commit_prefix_resolves_to_results_files(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(folder))
    write(folder / "aaaa11112222.jsonl", [time_record(1e-3, 0.01, seed=1)])
    write(folder / "aaaa11112222-dirty.jsonl", [time_record(5e-3, 0.01, seed=1)])
    write(folder / "bbbb33334444.jsonl", [time_record(1e-3, 0.01, seed=2)])
    write(folder / "bbbb99990000.jsonl", [time_record(1e-3, 0.01, seed=3)])
    assert compare.resolve("aaaa1111") == folder / "aaaa11112222.jsonl"  # the clean run before the dirty one
    assert compare.resolve("aaaa11112222-dirty") == folder / "aaaa11112222-dirty.jsonl"
    assert main(["compare", "aaaa", "bbbb3333", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["outcome"] == "unchanged"
    assert main(["compare", "aaaa", "bbbb"]) == 2
    assert "'bbbb' is ambiguous" in capsys.readouterr().err


def test_missing_and_corrupt_files_give_clear_errors(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", [time_record(1e-3, 0.01)])
    assert main(["compare", str(tmp_path / "nope.jsonl"), str(good)]) == 2
    assert "nope.jsonl': no such results file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(time_record(1e-3, 0.01)) + "\n{not json\n")
    assert main(["compare", str(good), str(bad)]) == 2
    assert "bad.jsonl:2: corrupt record" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["compare", str(good), str(empty)]) == 2
    assert "holds no records" in capsys.readouterr().err
    assert main(["compare", str(good), str(good), "--fail", "time:lots"]) == 2
    assert "threshold 'lots'" in capsys.readouterr().err
    assert main(["compare", str(good), str(good), "--fail", "kld_mean:+10%"]) == 2
    assert "no rows of kld_mean" in capsys.readouterr().err
