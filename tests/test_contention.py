"""Timings that can be trusted on a shared machine: every record's env carries the CPU model, its
vector extensions, the thread counts and the load average; `--threads` sets torch's and numba's
threads; contention (load beyond the free cores, oversubscription, scheduler slices in the samples, a
small case slower than a larger one) is warned about and marked on the records."""
import json
import math
import os
import subprocess
import sys
import time

import numba
import pytest
import torch

from quantbench.harness import contention, env, results, threads
from quantbench.harness.cli import main
from quantbench.harness.contention import Timed, check_contention, slice_reason

STARTED = time.monotonic()  # this process started before this module was imported


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


def no_load_average():
    raise OSError("getloadavg: load average unobtainable")


@pytest.fixture
def quiet_machine(monkeypatch):
    """Two cores, no load, this process's age unknown (its threads count as busy for the minute)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(contention, "process_age_s", lambda: None)
    monkeypatch.setattr(contention, "others_running", lambda: None)


def test_a_load_left_by_a_finished_process_is_not_contention(quiet_machine, monkeypatch):
    """The 1-minute load lags: with nothing else runnable now it does not mark the run."""
    monkeypatch.setattr(os, "getloadavg", lambda: (2.9, 1.0, 1.0))
    monkeypatch.setattr(contention, "others_running", lambda: 0)
    assert check_contention(2) == []
    monkeypatch.setattr(contention, "others_running", lambda: 1)
    assert check_contention(2)[0].startswith("load 2.9")


def test_others_running_sees_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(seen):
            time.sleep(0.05)
            seen.append(contention.others_running())
        assert max(seen) >= 1
    finally:
        busy.kill()
        busy.wait()


def test_every_record_env_has_cpu_threads_and_load(restore_threads, monkeypatch):
    rec = results.make_record(op="fwht", format="f32", backend="torch", variant="reference", case="rows=8,dim=64",
                              metric="time", value=1e-6, unit="s", direction="lower")
    e = rec["env"]
    assert isinstance(e["cpu_model"], str) and e["cpu_model"]
    assert isinstance(e["cpu_flags"], list)
    assert all(f in env.VECTOR_FLAGS or f.startswith("amx") for f in e["cpu_flags"])
    assert e["threads"] == {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
                            "cores": len(os.sched_getaffinity(0))}
    assert isinstance(e["load_avg"], float) and e["load_avg"] >= 0
    results.validate(rec)
    # thread counts and the load are read when the record is made, not cached with the rest
    torch.set_num_threads(1)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.25, 2.0, 1.0))
    later = env.environment()
    assert later["threads"]["torch"] == 1 and later["load_avg"] == 3.25
    monkeypatch.setattr(os, "getloadavg", no_load_average)
    assert "load_avg" not in env.environment()


@pytest.mark.parametrize("text, flags", [
    ("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 sse4_2 avx2 fma ht avx512f amx_tile amx_bf16\n",
     ["sse4_2", "avx2", "fma", "avx512f", "amx_bf16", "amx_tile"]),
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve\n", ["asimd", "asimddp", "sve"]),
    ("processor\t: 0\n", []),
])
def test_cpu_flags_are_the_vector_extensions_of_proc_cpuinfo(tmp_path, monkeypatch, text, flags):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    monkeypatch.setattr(env, "CPUINFO", cpuinfo)
    assert env.cpu_flags() == flags


def test_without_proc_cpuinfo_the_flags_are_empty_and_the_model_comes_from_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "CPUINFO", tmp_path / "absent")
    assert env.cpu_flags() == []
    assert env.cpu_name()


def bench_argv(path, *extra):
    return ["bench", "--op", "dequantize", "--format", "q8_0", "--backend", "numba", "--shape", "rows=64,dim=64",
            "--budget", "0.05", "--rounds", "2", "-o", "json", "--results", str(path), *extra]


def test_threads_1_through_the_cli_is_recorded(tmp_path, restore_threads, capsys):
    path = tmp_path / "r.jsonl"
    assert main(bench_argv(path, "--threads", "1")) == 0
    records = results.read_records(path)
    assert records and all(r["env"]["threads"]["torch"] == 1 and r["env"]["threads"]["numba"] == 1
                           for r in records)
    assert all(isinstance(r["contention"], list) for r in records)
    assert json.loads(capsys.readouterr().out)[0]["status"] == "ok"


def test_a_loaded_machine_is_warned_about_and_marked_on_the_records(tmp_path, restore_threads, capsys,
                                                                    quiet_machine, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    path = tmp_path / "r.jsonl"
    assert main(bench_argv(path, "-t", "1")) == 0
    err = capsys.readouterr().err
    assert "warning: contention: load 9.0 (1.0 of it this process) on 2 cores while this run uses 1 thread" in err
    records = results.read_records(path)
    assert records[0]["contention"][0].startswith("load 9.0")
    assert all(r["contention"] == records[0]["contention"] for r in records)


@pytest.mark.parametrize("value, message", [
    ("0", "expected an integer of at least 1"),
    ("-2", "expected an integer of at least 1"),
    ("two", "is not an integer"),
])
def test_a_bad_thread_count_is_a_usage_error(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exc:
        main(bench_argv(tmp_path / "r.jsonl", "--threads", value))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_more_threads_than_numba_has_is_a_clear_error(tmp_path, restore_threads, capsys):
    limit = numba.config.NUMBA_NUM_THREADS
    assert main(bench_argv(tmp_path / "r.jsonl", "--threads", str(limit + 1))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"quantbench bench: error: --threads {limit + 1}: numba runs at most {limit} threads")
    assert "NUMBA_NUM_THREADS" in err and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_set_threads_sets_torch_and_numba(restore_threads):
    threads.set_threads(1)
    assert threads.counts()["torch"] == threads.counts()["numba"] == threads.in_use() == 1


# -- the load rule --------------------------------------------------------------------------------------

@pytest.mark.parametrize("load, threads_used, contended", [
    (2.9, 2, True),  # the case: one core busy beside a 2-thread run
    (2.4, 2, False),  # our own two threads and a daemon
    (2.9, 1, True),
    (2.2, 1, False),
    (0.3, 1, False),
])
def test_load_beyond_the_free_cores_is_contention(quiet_machine, monkeypatch, load, threads_used, contended):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 1.0, 1.0))
    reasons = check_contention(threads_used)
    assert bool(reasons) == contended
    if contended:
        assert reasons[0].startswith(f"load {load:.1f} ({threads_used:.1f} of it this process) on 2 cores while "
                                     f"this run uses {threads_used} thread")
        assert reasons[0].endswith("are unreliable (use --threads 1 or a quiet machine)" if threads_used > 1
                                   else "timings are unreliable (use a quiet machine)")


def test_our_own_busy_threads_are_not_contention(quiet_machine, monkeypatch):
    # 60 s old, 120 s of CPU: two threads busy all along, 2 * (1 - 1/e) of the 1-minute load
    monkeypatch.setattr(contention, "process_age_s", lambda: 60.0)
    monkeypatch.setattr(time, "process_time", lambda: 120.0)
    assert contention.own_load_share(2) == pytest.approx(2 * (1 - math.exp(-1)))
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 1.0, 1.0))
    assert check_contention(2) == []
    monkeypatch.setattr(os, "getloadavg", lambda: (2.9, 1.0, 1.0))
    assert check_contention(2)[0].startswith("load 2.9 (1.3 of it this process)")


def test_no_load_average_means_no_load_reason(quiet_machine, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", no_load_average)
    assert check_contention(2) == []


def test_process_age_is_read_from_proc():
    age = contention.process_age_s()
    assert age is not None and time.monotonic() - STARTED <= age + 0.05


def test_more_threads_than_cores_is_contention(quiet_machine):
    reasons = check_contention(4)
    assert any(r.startswith("this run uses 4 threads on the 2 cores available to it") for r in reasons)


# -- the sample rules -----------------------------------------------------------------------------------

def clean_fast():
    """A 1.46 us kernel: small noise and a few interrupts of tens of microseconds."""
    return [1.46e-6 * (1 + 0.03 * math.sin(i)) for i in range(200)] + [30e-6, 45e-6, 60e-6]


def test_clean_samples_do_not_trigger():
    assert slice_reason(clean_fast()) is None
    assert slice_reason([8.0e-3 + 0.3e-3 * math.sin(i) for i in range(50)]) is None  # a real 8 ms kernel
    assert slice_reason([1.5e-6] * 2 + [8e-3] * 2) is None  # too few samples to say


def test_slow_samples_off_the_ticks_do_not_trigger():
    # a third of the calls 2.35-2.65 ms or 6.35-6.65 ms: far above the fastest, but on no tick's grid
    slow = [2.5e-3 + 0.15e-3 * math.sin(i) for i in range(10)] + [6.5e-3 + 0.15e-3 * math.sin(i) for i in range(10)]
    assert slice_reason([1.5e-6] * 40 + slow) is None


def test_samples_on_the_4ms_tick_trigger():
    slow = [4.02e-3, 8.01e-3, 8.03e-3, 12.0e-3, 7.98e-3] * 4
    reason = slice_reason([1.5e-6 * (1 + 0.01 * i) for i in range(30)] + slow)
    assert reason == "20 of 50 calls took whole multiples of 4 ms (the scheduler's tick), the fastest 1.5 us"


def test_a_median_stuck_on_a_slice_triggers():
    reason = slice_reason([8.0e-3] * 45 + [1.46e-6] * 5)
    assert reason == "median 8 ms is 5479x its fastest call (1.46 us)"


def test_a_small_case_slower_than_a_larger_one_triggers(quiet_machine):
    small = Timed("rows=1", [12.0e-3 * (1 + 1e-4 * i) for i in range(20)], "q4_0/numba/parallel", 290, 128)
    large = Timed("rows=4096", [41e-6] * 20, "q4_0/numba/parallel", 2_400_000, 1_000_000)
    reasons = check_contention(2, [small, large])
    assert reasons == ["rows=1: median 12 ms is 293x the same kernel's on a larger case (rows=4096: 41 us); its "
                       "timing measures the scheduler (use --threads 1 or a quiet machine)"]
    other_kernel = Timed("rows=4096", [41e-6] * 20, "q4_0/torch/reference", 2_400_000, 1_000_000)
    more_flops = Timed("m=512", [41e-6] * 20, "q4_0/numba/parallel", 2_400_000, 64)  # more bytes, fewer FLOPs
    assert check_contention(2, [small, other_kernel, more_flops]) == []
    assert check_contention(2, [Timed("rows=1", [41e-6] * 20, "k", 290, 128),
                                Timed("rows=4096", [12e-3] * 20, "k", 2_400_000, 1_000_000)]) == []


def test_flag_warns_and_marks_every_record(quiet_machine, monkeypatch, capsys):
    records = [{"metric": "time"}, {"metric": "gbps"}]
    assert contention.flag(records) == []
    assert [r["contention"] for r in records] == [[], []] and capsys.readouterr().err == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    reasons = contention.flag(records, [Timed("k", [8.0e-3] * 45 + [1.46e-6] * 5)])
    assert len(reasons) == 2 and all(r["contention"] == reasons for r in records)
    assert capsys.readouterr().err.splitlines() == [f"warning: contention: {r}" for r in reasons]
