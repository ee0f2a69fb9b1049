"""The asv suites: generated from the registry, skipping what cannot run, tracking stored records;
and a real `asv check` + quick `asv run` + `asv publish` in temporary folders (own git repo,
machine file and results), with the repository's asv.conf.json."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asv_runner.benchmarks.mark import SkipNotImplemented

from quantbench.harness import results
from quantbench.harness.suite_cases import suite_cases, suite_ops
from quantbench.suites.asv import _records, kernels, quality, throughput

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "1234567890ab" + "c" * 28


def class_for(op):
    return getattr(kernels, "Time" + "".join(part.title() for part in op.split("_")))


def test_one_class_per_op_with_params_from_the_suite_cases(monkeypatch):
    monkeypatch.setenv("QUANTBENCH_SUITE_SHAPES", "default")
    for op in suite_ops():
        cls = class_for(op)
        keys = {(f"{c.variant.backend}/{c.variant.name}", c.spec, c.case.shape_id) for c in suite_cases([op])}
        assert set(cls.cases) == keys
        assert cls.param_names == ["variant", "format", "shape"]
        assert {k[1] for k in keys} == set(cls.params[1])


def test_setup_skips_missing_combinations_and_unavailable_variants(monkeypatch):
    bench = kernels.TimeFwht()
    with pytest.raises(SkipNotImplemented, match="no variant torch/reference for q4_0"):
        bench.setup({"cpu": 1e10}, "torch/reference", "q4_0", "rows=12288,dim=64")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    unavailable = [(class_for(op), key) for op in suite_ops() for key, case in class_for(op).cases.items()
                   if case.variant.availability()]
    assert unavailable or kernels.torch.cuda.is_available()  # CPU machines have GPU-only variants
    for cls, key in unavailable[:3]:
        with pytest.raises(SkipNotImplemented, match="no CUDA device|not installed"):
            cls().setup({"cpu": 1e10}, *key)


def test_kernel_benchmark_runs_and_reports_roofline_ratio(monkeypatch):
    monkeypatch.setenv("QUANTBENCH_SUITE_SHAPES", "small")
    small = next(c for c in suite_cases(["fwht"]) if c.variant.backend == "torch")
    key = ("torch/reference", small.spec, small.case.shape_id)
    bench = kernels.TimeFwht()
    bench.cases = {key: small}
    peaks = {"cpu": 1e9}  # bytes/s: the ratio is the median time over bytes / peak
    bench.setup(peaks, *key)
    bench.time_kernel(peaks, *key)
    ratio = bench.track_roofline_ratio(peaks, *key)
    assert 0 < ratio < 1e4 and kernels.TimeFwht.track_roofline_ratio.unit == "x copy-bandwidth time"


def store_model_records(folder, commit):
    env = {"commit": commit, "dirty": False, "device": "test cpu", "time": "2025-01-01T00:00:00+00:00"}
    recs = [results.make_record("quality", "turbo3", "torch", "dequant_sdpa", "ctx64", "kld_mean", 0.25, "nats",
                                "lower", env=env, command="t"),
            results.make_record("decode", "turbo3", "torch", "dequant_sdpa", "n8", "decode_tok_s", 20.0, "tok/s",
                                "higher", env=env, command="t"),
            results.make_record("decode", "turbo3", "torch", "dequant_sdpa", "n8", "decode_tok_s", 40.0, "tok/s",
                                "higher", env=dict(env, time="2025-01-02T00:00:00+00:00"), command="t")]
    results.append(recs, folder / f"{commit[:12]}.jsonl")


def test_track_benchmarks_read_the_commits_records_as_lower_is_better(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(tmp_path))
    monkeypatch.setenv("ASV_COMMIT", COMMIT)
    monkeypatch.delenv("QUANTBENCH_COMMIT", raising=False)
    _records.commit_records.cache_clear()
    store_model_records(tmp_path, COMMIT)
    assert quality.TrackQuality().track_kld_mean("turbo3") == 0.25
    assert throughput.TrackThroughput().track_decode_ms_per_token("turbo3") == 1e3 / 40.0  # the newest record
    with pytest.raises(SkipNotImplemented, match="no prefill prefill_tok_s record for turbo3 at commit 1234567890ab"):
        throughput.TrackThroughput().track_prefill_ms_per_token("turbo3")
    assert "turbo3" in quality.TrackQuality.params[0]
    _records.commit_records.cache_clear()


# ---- asv itself ------------------------------------------------------------------------------
def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture
def asv_project(tmp_path):
    """A config like the repository's, pointing at a scratch git repo and scratch output folders."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("scratch\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "scratch")
    text = re.sub(r"^\s*//.*$", "", (ROOT / "asv.conf.json").read_text(), flags=re.M)
    conf = json.loads(text)
    conf.update(repo=str(repo), benchmark_dir=str(ROOT / "suites" / "asv"), results_dir=str(tmp_path / "asv"),
                html_dir=str(tmp_path / "html"), env_dir=str(tmp_path / "env"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(tmp_path), QUANTBENCH_SUITE_SHAPES="small", QUANTBENCH_RESULTS=str(tmp_path / "qb"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    env["QUANTBENCH_COMMIT"] = head  # the scratch repo's commit, not this checkout's HEAD
    return tmp_path, env, head


def run_asv(project, *args):
    folder, env, _ = project
    out = subprocess.run([sys.executable, "-m", "asv", *args, "--config", str(folder / "asv.conf.json")],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_asv_checks_runs_quick_and_publishes(asv_project):
    folder, env, head = asv_project
    store_model_records(folder / "qb", head)
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", "ci"], cwd=folder, env=env,
                   check=True, capture_output=True)
    assert "No problems found" in run_asv(asv_project, "check")
    run_asv(asv_project, "run", "--quick", "--set-commit-hash", "HEAD", "--machine", "ci",
            "-b", r"TimeFwht\.time_kernel", "-b", "track_kld_mean", "-b", "track_decode_ms_per_token")
    (result_file,) = [p for p in (folder / "asv" / "ci").glob("*.json") if p.name != "machine.json"]
    data = json.loads(result_file.read_text())
    assert data["commit_hash"] == head
    column = data["result_columns"].index("result")
    params = data["result_columns"].index("params")
    by_name = {name: (res[column], res[params]) for name, res in data["results"].items()}

    times, (variants, _, shapes) = by_name["kernels.TimeFwht.time_kernel"]
    reference = times[variants.index("'torch/reference'") * len(shapes)]
    assert reference is not None and 0 < reference < 10

    klds, (fmts,) = by_name["quality.TrackQuality.track_kld_mean"]
    assert klds[fmts.index("'turbo3'")] == 0.25
    decode, (fmts,) = by_name["throughput.TrackThroughput.track_decode_ms_per_token"]
    assert decode[fmts.index("'turbo3'")] == 25.0
    assert decode[fmts.index("'q4_0'")] is None or decode[fmts.index("'q4_0'")] != decode[fmts.index("'q4_0'")]

    run_asv(asv_project, "publish")
    assert (folder / "html" / "index.html").exists()
    graphs = list((folder / "html" / "graphs").rglob("kernels.TimeFwht.time_kernel.json"))
    assert graphs and json.loads(graphs[0].read_text())
