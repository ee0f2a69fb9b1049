"""`quantbench experiment run` and `quantbench landscape` end to end: verdicts from real runs, a
contradicted prediction coming out as a failure, records that reproduce, reproductions counted once."""
import json
import shlex

import pytest

from quantbench.harness import results
from quantbench.harness.cli import main

FORMAT_EXPERIMENT = """
id = "T-FMT"
title = "q4_0 against q8_0"
hypothesis = "fewer bits, more error"
source = "test"
kind = "format"
metric = "nmse"
baseline = "q8_0"
variants = ["q4_0"]
expect = "{expect}"
margin = 0.05
[run]
rows = 256
dim = 64
"""

KV_EXPERIMENT = """
id = "T-KV"
title = "rotation matters"
hypothesis = "turbo3 without its rotation is worse"
kind = "kv"
metric = "kld_mean"
baseline = "turbo3"
variants = ["turbo3:rotate=0"]
expect = "{expect}"
margin = 0.05
[run]
ctx = 64
chunks = 3
device = "cpu"
"""


def write(folder, name, text):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def run_json(capsys, argv) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_contradicted_prediction_is_a_failure_and_a_right_one_a_success(tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    wrong = write(tmp_path / "exp", "wrong.toml", FORMAT_EXPERIMENT.replace("{expect}", "better"))
    right = write(tmp_path / "exp2", "right.toml", FORMAT_EXPERIMENT.replace("{expect}", "worse"))
    (row,) = run_json(capsys, ["experiment", "run", str(wrong), "-o", "json", "--results", str(store)])
    assert row["id"] == "T-FMT" and row["verdict"] == "failure" and "q4_0 +" in row["detail"]
    (row,) = run_json(capsys, ["experiment", "run", str(right), "-o", "json", "--results", str(store)])
    assert row["verdict"] == "success" and row["confidence"] == 3

    records = results.read_records(store)
    verdicts = [r for r in records if r["variant"] == "verdict"]
    arms = [r for r in records if r["variant"] == "q4_0"]
    assert len(verdicts) == 2 and len(arms) == 2
    summary = verdicts[0]["experiment"]
    assert summary["verdict"] == "failure" and summary["baseline"] == "q8_0" and summary["n_blocks"] == 16
    assert len(summary["per_block"]["q4_0"]) == 16 and min(summary["per_block"]["q4_0"]) > summary["baseline_value"]
    assert summary["variants"][0]["ci_low"] > 0.05 and summary["hypothesis"] == "fewer bits, more error"
    assert arms[0]["value"] == pytest.approx(summary["variants"][0]["rel_diff"]) and arms[0]["unit"] == "relative"
    assert shlex.split(verdicts[0]["command"]) == ["quantbench", "experiment", "run", str(wrong)]
    assert verdicts[0]["env"]["versions"]["torch"]


def test_reproductions_count_independent_runs_once(tmp_path, capsys):
    folder = tmp_path / "exp"
    write(folder, "fmt.toml", FORMAT_EXPERIMENT.replace("{expect}", "worse"))
    store = tmp_path / "r.jsonl"
    base = ["experiment", "run", "T-FMT", "--dir", str(folder), "-o", "json", "--results", str(store)]
    run_json(capsys, base)
    run_json(capsys, base)  # an identical re-run: not a reproduction
    run_json(capsys, [*base, "--seed", "2"])
    run_json(capsys, [*base, "--set", "dim=128"])
    rows = run_json(capsys, ["landscape", "--results", str(store), "--dir", str(folder), "-o", "json"])
    (row,) = rows
    assert row["result"] == "success" and row["reproductions"] == "3/3 agree" and row["confidence"] == 5
    verdict = [r for r in results.read_records(store) if r["variant"] == "verdict"][-1]
    assert shlex.split(verdict["command"]) == ["quantbench", "experiment", "run", "T-FMT", "--dir", str(folder),
                                               "--set", "dim=128"]
    assert verdict["experiment"]["config"]["dim"] == 128


def test_the_landscape_lists_experiments_without_verdicts_and_renders_markdown(tmp_path, capsys):
    folder = tmp_path / "exp"
    write(folder, "fmt.toml", FORMAT_EXPERIMENT.replace("{expect}", "worse"))
    assert main(["landscape", "--results", str(tmp_path / "none.jsonl"), "--dir", str(folder), "-o", "md"]) == 0
    out = capsys.readouterr().out
    assert "| T-FMT" in out and "not run" in out


def test_a_kv_experiment_on_the_model_decides_from_per_token_kld(tmp_path, capsys):
    folder = tmp_path / "exp"
    write(folder, "kv.toml", KV_EXPERIMENT.replace("{expect}", "better"))
    store = tmp_path / "r.jsonl"
    (row,) = run_json(capsys, ["experiment", "run", "T-KV", "--dir", str(folder), "-o", "json", "--results",
                               str(store)])
    assert row["verdict"] == "failure" and row["case"] == "ctx64,chunks3,corpus=pydoc_topics"
    verdict = [r for r in results.read_records(store) if r["variant"] == "verdict"][0]["experiment"]
    assert verdict["n_blocks"] == 3 and verdict["variants"][0]["outcome"] == "worse"
    assert verdict["shown"]["turbo3"]["bits_per_value"] == pytest.approx(3.25)
    (row,) = run_json(capsys, ["experiment", "run", "T-KV", "--dir", str(folder), "--seed", "1", "-o", "json",
                               "--no-store"])
    assert row["case"] == "ctx64,chunks3,corpus=pydoc_topics,start=3"


def test_requirements_the_machine_lacks_make_an_experiment_not_runnable(tmp_path, capsys):
    text = KV_EXPERIMENT.replace("{expect}", "worse").replace("[run]", '[requires]\nhead_dim = 128\n[run]')
    path = write(tmp_path / "exp", "hd.toml", text)
    (row,) = run_json(capsys, ["experiment", "run", str(path), "-o", "json", "--results", str(tmp_path / "r.jsonl")])
    assert row["verdict"] == "not runnable here: needs head_dim = 128; this configuration has 64"
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.cpu_only
def test_a_cuda_experiment_is_not_runnable_without_a_gpu(capsys):
    (row,) = run_json(capsys, ["experiment", "run", "EXP-0049", "-o", "json", "--no-store"])
    assert row["verdict"].startswith("not runnable here: needs device = cuda")
    rows = run_json(capsys, ["landscape", "--results", "absent.jsonl", "-o", "json"])
    assert next(r for r in rows if r["id"] == "EXP-0049")["result"].startswith("not runnable here: needs device")


def test_a_kernel_experiment_times_its_arms_in_the_same_rounds(tmp_path, capsys):
    text = """
id = "T-K"
title = "numba against torch"
hypothesis = "h"
kind = "kernel"
metric = "time"
baseline = "torch/reference"
variants = ["numba/parallel"]
expect = "better"
[run]
op = "dequantize"
format = "q8_0"
shape = "rows=256,dim=128"
budget = 0.3
rounds = 4
"""
    path = write(tmp_path / "exp", "k.toml", text)
    store = tmp_path / "r.jsonl"
    (row,) = run_json(capsys, ["experiment", "run", str(path), "-o", "json", "--results", str(store)])
    assert row["verdict"] in ("success", "failure", "inconclusive")
    summary = [r for r in results.read_records(store) if r["variant"] == "verdict"][0]["experiment"]
    assert summary["block"] == "round" and summary["n_blocks"] == 4 and summary["direction"] == "lower"
    assert summary["shown"]["numba/parallel"]["time_us"] > 0


def test_bad_references_and_settings_exit_with_a_message(tmp_path, capsys):
    assert main(["experiment", "run", "NO-SUCH-ID", "--no-store"]) == 2
    assert "no experiment 'NO-SUCH-ID'" in capsys.readouterr().err
    assert main(["experiment", "run", "--no-store"]) == 2
    assert "or give --all" in capsys.readouterr().err
    assert main(["experiment", "run", "EXP-0005", "--set", "nonsense", "--no-store"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    path = write(tmp_path / "exp", "bad.toml", FORMAT_EXPERIMENT.replace("{expect}", "worse").replace(
        '"q4_0"]', '"q4_7"]'))
    assert main(["experiment", "run", str(path), "-o", "json", "--no-store"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["verdict"].startswith("error:") and "q4_7" in row["verdict"]


def test_experiment_list_shows_the_committed_experiments(capsys):
    assert main(["experiment", "list", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"EXP-0005", "S000-Q8-KV", "EXP-0051"} <= {r["id"] for r in rows}


def test_landscape_html_writes_one_page_with_the_table_and_the_forest_plot(tmp_path, capsys):
    folder = tmp_path / "exp"
    write(folder, "fmt.toml", FORMAT_EXPERIMENT.replace("{expect}", "worse"))
    store = tmp_path / "r.jsonl"
    run_json(capsys, ["experiment", "run", "T-FMT", "--dir", str(folder), "-o", "json", "--results", str(store)])
    page = tmp_path / "landscape.html"
    assert main(["landscape", "--results", str(store), "--dir", str(folder), "--html", str(page)]) == 0
    text = page.read_text()
    assert "T-FMT" in text and "q4_0 against q8_0" in text and "<svg" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text


def test_a_weights_experiment_compares_activation_arms_on_the_same_tokens(tmp_path, capsys):
    text = """
id = "T-ACT"
title = "int4 activations"
hypothesis = "per-token int4 inputs cost more than int8 ones, also over q8_0 weights"
kind = "weights"
metric = "kld_mean"
baseline = {label = "A8", weights = "none", act = "int8"}
variants = [{label = "A4", weights = "none", act = "int4"}, {label = "W8A4", act = "int4"}]
expect = "worse"
[run]
ctx = 64
chunks = 2
device = "cpu"
"""
    path = write(tmp_path / "exp", "act.toml", text)
    store = tmp_path / "r.jsonl"
    (row,) = run_json(capsys, ["experiment", "run", str(path), "-o", "json", "--results", str(store)])
    assert row["verdict"] == "success"
    shown = [r for r in results.read_records(store) if r["variant"] == "verdict"][0]["experiment"]["shown"]
    assert shown["A8"]["act_bits"] > 8 and shown["A4"]["act_bits"] < 5 and shown["W8A4"]["weights_bpw"] == 8.5
