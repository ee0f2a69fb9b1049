"""The Ray engine against the local one: a local 2-CPU cluster runs the same two experiments and
the driver stores the same records (all but the time they were made, the load average then, and the
worker's thread counts)."""
import pytest
import torch

from quantbench.harness import results
from quantbench.harness.cli import main

ray = pytest.importorskip("ray", reason="ray is in the test extra: pip install -e '.[test]'")

EXPERIMENTS = {
    "fmt.toml": """
id = "R-FMT"
title = "t"
hypothesis = "h"
kind = "format"
metric = "nmse"
baseline = "q8_0"
variants = ["q4_0"]
expect = "worse"
[run]
rows = 128
dim = 64
""",
    "kv.toml": """
id = "R-KV"
title = "t"
hypothesis = "h"
kind = "kv"
metric = "kld_mean"
baseline = "q8_0"
variants = ["q4_0"]
expect = "worse"
[run]
ctx = 64
chunks = 2
device = "cpu"
""",
}


def comparable(record: dict) -> dict:
    env = {k: v for k, v in record["env"].items() if k not in ("time", "load_avg", "threads")}
    return {**record, "env": env}


def test_ray_and_local_engines_store_identical_records(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    for name, text in EXPERIMENTS.items():
        (folder / name).write_text(text)
    monkeypatch.setenv("QUANTBENCH_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU Ray worker, so that float reductions agree bit for bit
    try:
        local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
        assert main(["experiment", "run", "--all", "--dir", str(folder), "--results", str(local), "-o", "json"]) == 0
        ray.init(num_cpus=2, include_dashboard=False,
                 runtime_env={"env_vars": {"QUANTBENCH_CACHE": str(tmp_path / "cache")}})
        try:
            assert main(["experiment", "run", "--all", "--dir", str(folder), "--engine", "ray", "--results",
                         str(remote), "-o", "json"]) == 0
        finally:
            ray.shutdown()
    finally:
        torch.set_num_threads(before)
    mine, theirs = results.read_records(local), results.read_records(remote)
    assert len(mine) == len(theirs) == 4
    assert [comparable(r) for r in mine] == [comparable(r) for r in theirs]
