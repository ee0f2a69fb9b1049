"""The pytest-benchmark suite in suites/: the shared case list, runnable, extra_info per benchmark,
and kept out of the normal test run."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from quantbench.harness.suite_cases import suite_cases

ROOT = Path(__file__).resolve().parent.parent


def run_suite(*args):
    env = dict(os.environ, QUANTBENCH_SUITE_SHAPES="small")
    out = subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", "-q", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_suite_is_parametrized_by_the_shared_case_list():
    listed = {line.split("::", 1)[1] for line in run_suite("--collect-only").splitlines() if "::test_kernel[" in line}
    assert listed == {f"test_kernel[{c.id}]" for c in suite_cases(mode="small")}


def test_suite_runs_with_benchmarks_disabled():
    available = [c for c in suite_cases(["fwht"], mode="small") if not c.variant.availability()]
    out = run_suite("-k", "fwht", "--benchmark-disable")
    assert f"{len(available)} passed" in out


def test_benchmarks_carry_bandwidth_and_bits_per_value(tmp_path):
    report = tmp_path / "bench.json"
    run_suite("-k", "fwht and torch", "--benchmark-only", f"--benchmark-json={report}", "--benchmark-max-time=0.02",
              "--benchmark-min-rounds=3", "--benchmark-warmup=off")
    (bench,) = json.loads(report.read_text())["benchmarks"]
    info, median = bench["extra_info"], bench["stats"]["median"]
    assert info["op"] == "fwht" and info["backend"] == "torch" and info["bits_per_value"] == 32.0
    assert info["gbps"] == info["bytes"] / median / 1e9
    assert 0 < info["pct_peak"]
    assert bench["group"] == f"fwht f32 {info['case']}"


def test_normal_test_run_collects_only_tests():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
