"""The environment a result was measured in: commit, dirty flag, device, versions, time."""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

_PACKAGES = ("torch", "numpy", "numba", "triton", "pandas", "gguf", "numba-cuda", "quantbench")


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> tuple[str | None, bool]:
    """(full commit hash or None outside a git checkout, whether the tree has uncommitted changes)."""
    head = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if head else False
    return head, dirty


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _gpu_details() -> dict:
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    details = {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
               "cuda": torch.version.cuda}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10)
        if smi.returncode == 0:
            driver, sm, mem = [s.strip() for s in smi.stdout.splitlines()[0].split(",")]
            details.update(driver=driver, sm_clock=sm, mem_clock=mem)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return details


@functools.lru_cache(maxsize=None)
def _static_env(device: str) -> tuple:
    head, dirty = commit()
    env = {
        "commit": head,
        "dirty": dirty,
        "device": device_name(device),
        "host": platform.node(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        **_gpu_details(),
    }
    return tuple(env.items())


def environment(device: str = "cpu") -> dict:
    env = dict(_static_env(device))
    env["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return env
