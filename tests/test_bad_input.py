"""Bad input ends in one line that names the problem and a non-zero exit, never a traceback
(issue: reliability). Each case here failed with a traceback or silently before."""
import json

import pytest
from model_helpers import random_hf_weights, tiny_hf_config, write_hf_dir

from quantbench.harness import results
from quantbench.harness.cli import main
from quantbench.harness.model import ModelFileError, load_model


def error_of(capsys, argv) -> str:
    """The one error line of a command that must fail with exit status 2."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects the flag itself
        code = exc.code
    assert code == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("shape, message", [
    ("rows=1", "dequantize: case dims are rows, dim; missing dim"),
    ("rows=4,dmi=64", "missing dim; unknown dmi"),
    ("rows=4,dim=64,foo=3", "unknown foo"),
    ("rows=4,rows=8", "rows given twice"),
])
def test_bench_names_wrong_case_dims(capsys, shape, message):
    assert message in error_of(capsys, ["bench", "--op", "dequantize", "--shape", shape, "--no-store"])


def test_every_op_declares_its_dims():
    from quantbench.kernels import registry

    registry.load_all()
    assert all(op.dims for op in registry.OPS.values()), [o.name for o in registry.OPS.values() if not o.dims]


def test_every_op_names_its_dims(capsys):
    assert "gemv: case dims are m, n, k; missing m" in error_of(
        capsys, ["bench", "--op", "gemv", "--shape", "n=64,k=64", "--no-store"])


@pytest.mark.parametrize("flag, value, message", [
    ("--dtype", "int8", "invalid choice: 'int8'"),
    ("--dtype", "bool", "invalid choice: 'bool'"),
    ("--dtype", "bogus", "invalid choice: 'bogus'"),
    ("--budget", "-1", "expected a finite number above 0"),
    ("--budget", "0", "expected a finite number above 0"),
    ("--budget", "nan", "expected a finite number above 0"),
    ("--budget", "inf", "expected a finite number above 0"),
    ("--rounds", "0", "expected an integer of at least 1"),
])
def test_bench_rejects_bad_flag_values(capsys, flag, value, message):
    assert message in error_of(capsys, ["bench", "--op", "fwht", flag, value, "--no-store"])


def test_an_op_that_takes_float32_only_says_so(capsys):
    line = error_of(capsys, ["bench", "--op", "gemv", "--shape", "m=1,n=32,k=64", "--dtype", "float16", "--no-store"])
    assert "gemv: dtype 'float16' is not one of float32" in line


def test_a_format_that_rejects_the_dim_is_skipped_and_the_rest_stored(capsys, tmp_path):
    path = tmp_path / "r.jsonl"
    code = main(["bench", "--op", "dequantize", "--format", "q4_0,turbo3", "--backend", "torch",
                 "--shape", "rows=4,dim=96", "--budget", "0.01", "-o", "json", "--results", str(path)])
    assert code == 0
    rows = {r["format"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["q4_0"]["status"] == "ok"
    assert rows["turbo3"]["status"].startswith("skipped: turbo3") and "96" in rows["turbo3"]["status"]
    assert {r["format"] for r in results.read_records(path) if r["op"] == "dequantize"} == {"q4_0"}


def test_nothing_runnable_is_an_error(capsys):
    assert "no case can run: fwht: dim=48 is not a power of two" in error_of(
        capsys, ["bench", "--op", "fwht", "--shape", "rows=4,dim=48", "--no-store"])


def bench_to(path) -> list[str]:
    return ["bench", "--op", "fwht", "--backend", "torch", "--shape", "rows=8,dim=64", "--budget", "0.01",
            "--rounds", "1", "--results", str(path)]


def test_results_path_that_is_a_folder(capsys, tmp_path):
    assert "is a folder, not a results file" in error_of(capsys, bench_to(tmp_path))


def test_results_path_that_cannot_be_written(capsys):
    assert "cannot write results" in error_of(capsys, bench_to("/proc/nope/x.jsonl"))


def test_report_outputs_that_cannot_be_written(capsys, tmp_path):
    stored = tmp_path / "r.jsonl"
    assert main(bench_to(stored)) == 0
    capsys.readouterr()
    assert "/proc/nope" in error_of(capsys, ["compare", str(stored), str(stored), "--report", "/proc/nope/c.md"])
    assert "/proc/nope" in error_of(capsys, ["report", "--results", str(stored), "--out", "/proc/nope"])
    assert "/proc/nope" in error_of(capsys, ["history", "--metric", "time", "--results", str(stored),
                                             "--plot", "/proc/nope/h.png"])


@pytest.mark.parametrize("device, message", [("tpu", "--device 'tpu': expected cpu, cuda or cuda:N"),
                                             ("cpu:1", "expected cpu, cuda or cuda:N")])
def test_quality_names_an_unknown_device(capsys, device, message):
    assert message in error_of(capsys, ["quality", "--kv", "q8_0", "--device", device, "--no-store"])


@pytest.mark.parametrize("change, message", [
    ({"num_attention_heads": None}, "missing num_attention_heads"),
    ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer, got 0"),
    ({"num_attention_heads": "four"}, "num_attention_heads must be a positive integer, got 'four'"),
    ({"hidden_size": 64.5}, "hidden_size must be a positive integer"),
])
def test_a_bad_config_json_is_a_model_file_error(tmp_path, change, message):
    cfg = tiny_hf_config()
    write_hf_dir(tmp_path, cfg, random_hf_weights(cfg))
    bad = {**cfg, **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path)


def test_tcq_sweep_rejects_zero_and_says_what_it_rounds(capsys):
    assert "expected an integer of at least 1" in error_of(capsys, ["tcq-sweep", "--seq", "0", "--no-store"])
    code = main(["tcq-sweep", "--bits", "2", "--L", "4", "--seq", "64", "--values", "100", "--no-speed",
                 "--train-max-L", "0", "--no-store", "-o", "md"])
    captured = capsys.readouterr()
    assert code == 0
    assert "--values 100 rounded to 64" in captured.err and "64 values in sequences of 64" in captured.out
