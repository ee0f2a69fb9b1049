"""`quantbench profile` (harness/profiling/): the torch profiler on the CPU for real (a child process,
its Chrome trace and per-operator self times, records); the ncu and nsys commands as built, printed
by --dry-run; a missing tool; the byte-model check on given numbers.

The ncu and nsys CSV parsers (profiling/reports.py) are not tested here: they need reports captured
on a GPU, and none has been committed yet.
"""
import json
import shlex

import pytest

from quantbench.harness.cli import main
from quantbench.harness.profiling import session
from quantbench.harness.profiling.reports import byte_model_check
from quantbench.harness.results import read_records

CASE = ["--op", "dequantize", "--format", "q4_0", "--backend", "torch", "--variant", "reference",
        "--shape", "rows=64,dim=64"]


def test_torch_profile_writes_a_trace_and_self_times(tmp_path, capsys):
    results = tmp_path / "records.jsonl"
    assert main(["profile", *CASE, "--tool", "torch", "-o", "json", "--results", str(results)]) == 0
    rows = json.loads(capsys.readouterr().out)
    operators = {r["operator"] for r in rows}
    assert any(op.startswith("aten::") for op in operators), operators
    name = "dequantize[q4_0](rows=64,dim=64):torch.reference"
    assert name in operators  # the record_function around the profiled calls
    traces = list((tmp_path / "results" / "profiles").glob("*-torch.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    assert any(e.get("name") == name for e in events)
    records = read_records(results)
    assert records and {r["metric"] for r in records} == {"self_cpu_time"}
    assert all(r["op"] == "profile" and r["variant"] == "dequantize/reference" for r in records)


@pytest.mark.parametrize("tool, expected", [
    ("ncu", ["--nvtx", "--nvtx-include", "quantbench@dequantize[q4_0](rows=64,dim=64):torch.reference/"]),
    ("nsys", ["--capture-range=nvtx", "--nvtx-capture=dequantize[q4_0](rows=64,dim=64):torch.reference@quantbench"]),
])
def test_dry_run_prints_the_exact_commands_quoted_for_a_shell(tool, expected, capsys):
    assert main(["profile", *CASE, "--tool", tool, "--dry-run"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    request = session.ProfileRequest("dequantize", "q4_0", "torch", "reference", {"rows": 64, "dim": 64}, tool,
                                     python="python")
    assert [shlex.split(line) for line in printed] == session.commands(request)
    profile = shlex.split(printed[0])
    assert profile[0] == tool
    assert all(part in profile for part in expected), profile
    child = profile[profile.index("python"):]
    assert child[:3] == ["python", "-m", "quantbench.harness.profiling.one_case"]


def test_a_missing_tool_is_one_line_and_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["profile", *CASE, "--tool", "ncu", "--no-store"]) == 1
    assert capsys.readouterr().err.strip() == "unavailable: ncu not found on PATH"


def test_an_unknown_variant_is_one_error_line(capsys):
    args = [a if a != "reference" else "nope" for a in CASE]
    assert main(["profile", *args, "--tool", "torch", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no variant dequantize/torch/nope" in err[0]


def test_the_range_name_has_no_character_the_tools_read_as_syntax():
    request = session.ProfileRequest("attn_decode", "turbo3:group=64", "triton", "native",
                                     {"batch": 1, "ctx": 32}, "ncu")
    assert "/" not in request.range and "@" not in request.range


def test_byte_model_check_flags_a_case_off_by_more_than_ten_percent():
    within = byte_model_check(declared_bytes=1000, read_bytes=2 * 900, written_bytes=2 * 150, calls=2)
    assert within["measured_bytes"] == 1050 and within["ratio"] == pytest.approx(1.05) and not within["off"]
    assert byte_model_check(1000, 800, 0)["off"]  # 20% under: the op declares bytes it does not move
    assert byte_model_check(1000, 1000, 150)["off"]  # 15% over
    assert not byte_model_check(1000, 910, 0)["off"]
    with pytest.raises(ValueError):
        byte_model_check(0, 1, 1)


TINY_MODEL = dict(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, dim=64, hidden_dim=128, vocab_size=256,
                  max_seq_len=256)


def test_throughput_profiles_a_whole_decode_step_with_torch(tmp_path, capsys):
    config = tmp_path / "model.json"
    config.write_text(json.dumps(TINY_MODEL))
    results = tmp_path / "records.jsonl"
    argv = ["throughput", "--config", str(config), "--kv", "turbo3", "--attn", "native", "-p", "0", "-n", "1",
            "-d", "32", "--device", "cpu", "--profile", "torch", "-o", "json", "--results", str(results)]
    assert main(argv) == 0
    operators = {r["operator"] for r in json.loads(capsys.readouterr().out)}
    assert {"decode_step", "attention", "matmul"} <= operators
    assert list((tmp_path / "results" / "profiles").glob("throughput-turbo3-native-d32-torch.trace.json"))
    cases = {r["case"] for r in read_records(results)}
    assert {"d32|attention", "d32|matmul"} <= cases


def test_throughput_under_nsys_needs_nsys(tmp_path, monkeypatch, capsys):
    config = tmp_path / "model.json"
    config.write_text(json.dumps(TINY_MODEL))
    monkeypatch.setenv("PATH", str(tmp_path))
    argv = ["throughput", "--config", str(config), "-p", "0", "-n", "1", "--device", "cpu", "--profile", "nsys"]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == "unavailable: nsys not found on PATH"
