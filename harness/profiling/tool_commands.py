"""The argument lists that run the one-case child under ncu or nsys, limited to the case's NVTX range,
and the ones that export their reports as CSV for the parsers (ncu_report.py, nsys_report.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

from .one_case import DOMAIN
from .reports import NCU_SUMMARY

TOOLS = ("ncu", "nsys", "torch")

def missing_tool(tool: str) -> str | None:
    """'unavailable: ncu not found on PATH', or None when the tool is there (torch always is)."""
    if tool != "torch" and shutil.which(tool) is None:
        return f"unavailable: {tool} not found on PATH"
    return None


def ncu_profile(child: list[str], range_name: str, report: Path) -> list[str]:
    """ncu over the kernels launched inside the push/pop range `range_name` of quantbench's domain."""
    return ["ncu", "--nvtx", "--nvtx-include", f"{DOMAIN}@{range_name}/", "--metrics", ",".join(NCU_SUMMARY),
            "--force-overwrite", "--export", str(report), *child]


def ncu_export(report: Path) -> list[str]:
    """The report's raw page as CSV: one row per kernel launch, one column per metric."""
    return ["ncu", "--import", str(report), "--csv", "--page", "raw"]


def nsys_profile(child: list[str], range_name: str | None, report: Path) -> list[str]:
    """nsys capturing from the start of range `range_name` (all of the run when None) to its end."""
    capture = ["--capture-range=nvtx", f"--nvtx-capture={range_name}@{DOMAIN}", "--capture-range-end=stop"] \
        if range_name else []
    return ["nsys", "profile", "--trace=cuda,nvtx", *capture, "--force-overwrite=true", "--output", str(report),
            *child]


def nsys_export(report: Path, prefix: Path) -> list[str]:
    """Kernel time per NVTX range (nsys's nvtx_kern_sum report) as CSV, written to <prefix>_nvtx_kern_sum.csv."""
    return ["nsys", "stats", "--report", "nvtx_kern_sum", "--format", "csv", "--force-export=true",
            "--output", str(prefix), str(report)]
