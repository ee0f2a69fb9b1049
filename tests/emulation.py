"""GPU kernels on the CPU, in a child process: Triton's interpreter (TRITON_INTERPRET=1) or the
numba-cuda simulator (NUMBA_ENABLE_CUDASIM=1).

Each switch takes effect only if it is set before triton / numba.cuda is first imported, which
another test module of the session may already have done: hence a fresh Python. The child sees no
CUDA device (CUDA_VISIBLE_DEVICES=""), so on a GPU machine too it runs as on a machine without one,
with CPU tensors (the simulator cannot take CUDA tensors).

    done = run_emulated("triton", script=SOURCE, cache=tmp_path)
    assert_succeeded(done, "interpreted attention ok")
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TIMEOUT_S = 600  # every child: the slowest takes well under a minute on two cores
SWITCHES = {"triton": "TRITON_INTERPRET", "numba-cuda": "NUMBA_ENABLE_CUDASIM"}


def run_emulated(emulator: str, *, script: str | None = None, test_file: str | Path | None = None,
                 pytest_args=(), cache: str | Path | None = None, env: dict | None = None,
                 ) -> subprocess.CompletedProcess:
    """Run `script` (Python source) or `test_file` under pytest (-v, with `pytest_args`) with
    `emulator` ("triton" or "numba-cuda") switched on; QUANTBENCH_CACHE=`cache` when given, and
    the extra variables `env`. Returns the finished process, output captured as text."""
    if (script is None) == (test_file is None):
        raise ValueError("give exactly one of script and test_file")
    child_env = {**os.environ, SWITCHES[emulator]: "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    if cache is not None:
        child_env["QUANTBENCH_CACHE"] = str(cache)
    if script is not None:
        argv = [sys.executable, "-c", script]
    else:
        argv = [sys.executable, "-m", "pytest", str(test_file), "-v", "-p", "no:cacheprovider", *pytest_args]
    return subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=TIMEOUT_S)


def output_tail(done: subprocess.CompletedProcess, chars: int = 4000) -> str:
    """The end of the child's stdout and of its stderr, for a failure message."""
    return f"exit status {done.returncode}\n--- stdout\n{done.stdout[-chars:]}\n--- stderr\n{done.stderr[-chars:]}"


def assert_succeeded(done: subprocess.CompletedProcess, marker: str | None = None) -> None:
    """The child exited with status 0 and printed the line `marker` (when given)."""
    assert done.returncode == 0, output_tail(done)
    if marker is not None:
        assert marker in done.stdout.splitlines(), f"no line {marker!r} in the output\n{output_tail(done)}"
