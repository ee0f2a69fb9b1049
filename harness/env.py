"""The environment a result was measured in: commit, dirty flag, device, CPU model and vector
extensions, versions, thread counts, load average, time."""
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

from . import threads

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


CPUINFO = Path("/proc/cpuinfo")
# the vector extensions a kernel's speed depends on, as /proc/cpuinfo names them (x86 "flags", Arm "Features")
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512vbmi", "avx512_vbmi2", "avx512_bf16", "avx512_fp16", "gfni",
                "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")


def _cpuinfo_field(*names: str) -> str | None:
    """The first processor's value of the first of `names` in /proc/cpuinfo; None without one."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() in names:
            return value.strip()
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector extensions (VECTOR_FLAGS order, AMX's amx_* after them); empty without /proc/cpuinfo."""
    flags = set((_cpuinfo_field("flags", "Features") or "").split())
    return [f for f in VECTOR_FLAGS if f in flags] + sorted(f for f in flags if f.startswith("amx"))


def load_average() -> float | None:
    """The 1-minute load average now; None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


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
        "cpu_model": cpu_name(),
        "cpu_flags": cpu_flags(),
        "versions": _versions(),
        **_gpu_details(),
    }
    return tuple(env.items())


def environment(device: str = "cpu") -> dict:
    """The record's environment; thread counts and load average are read now, the rest once."""
    env = dict(_static_env(device))
    env["threads"] = threads.counts()
    load = load_average()
    if load is not None:
        env["load_avg"] = load
    env["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return env
