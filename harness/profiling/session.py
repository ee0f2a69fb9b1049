"""One case profiled in a child process under a tool: the command built, run, its report kept under
results/profiles/ and summarized as rows and records (ncu also checks the op's byte model)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from quantbench.harness.errors import UserError
from quantbench.harness.results import make_record
from quantbench.kernels.registry import Case, find_variant, get_op
from quantbench.kernels.storage import results_dir

from . import reports, tool_commands
from .one_case import range_name

CHILD_MODULE = "quantbench.harness.profiling.one_case"
CHILD_TIMEOUT_S = 1800


def profile_stem(label: str) -> Path:
    """results/profiles/<label>, the label made a safe file name (the tools add their suffixes)."""
    return results_dir() / "profiles" / re.sub(r"[^A-Za-z0-9_.=,-]+", "_", label)


@dataclass
class ProfileRequest:
    op: str
    spec: str
    backend: str
    variant: str
    dims: dict[str, int]
    tool: str
    calls: int = 3
    python: str = sys.executable

    @property
    def shape_id(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.dims.items())

    @property
    def range(self) -> str:
        return range_name(self.op, self.spec, self.shape_id, self.backend, self.variant)

    def child(self) -> list[str]:
        return [self.python, "-m", CHILD_MODULE, "--op", self.op, "--format", self.spec, "--backend", self.backend,
                "--variant", self.variant, "--shape", self.shape_id, "--calls", str(self.calls)]

    def stem(self) -> Path:
        return profile_stem(f"{self.op}-{self.spec}-{self.backend}-{self.variant}-{self.shape_id}-{self.tool}")


@dataclass
class ProfileResult:
    rows: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def check_request(request: ProfileRequest) -> None:
    """UserError naming what is wrong: the op, the variant, or the case's dimensions."""
    try:
        op = get_op(request.op)
        find_variant(request.op, request.spec, request.backend, request.variant)
    except KeyError as exc:
        raise UserError(exc.args[0]) from None
    op.check_dims(request.dims)
    if request.tool not in tool_commands.TOOLS:
        raise UserError(f"--tool {request.tool!r}: expected one of {', '.join(tool_commands.TOOLS)}")


def commands(request: ProfileRequest) -> list[list[str]]:
    """The command lines a run takes: the tool over the child, then the report's export."""
    stem = request.stem()
    if request.tool == "ncu":
        report = stem.with_suffix(".ncu-rep")
        return [tool_commands.ncu_profile(request.child(), request.range, report), tool_commands.ncu_export(report)]
    if request.tool == "nsys":
        report = stem.with_suffix(".nsys-rep")
        return [tool_commands.nsys_profile(request.child(), request.range, report),
                tool_commands.nsys_export(report, stem)]
    return [request.child() + ["--torch-trace", str(stem.with_suffix(".trace.json")),
                               "--torch-table", str(stem.with_suffix(".operators.json"))]]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise UserError(f"{Path(argv[0]).name} exited with status {done.returncode}: "
                        f"{lines[-1] if lines else 'no output'}")
    return done


def run_profile(request: ProfileRequest) -> ProfileResult:
    stem = request.stem()
    stem.parent.mkdir(parents=True, exist_ok=True)
    argv = commands(request)
    _run(argv[0])
    if request.tool == "torch":
        return _torch_summary(request, stem)
    exported = _run(argv[1])
    if request.tool == "ncu":
        csv_path = stem.with_suffix(".csv")
        csv_path.write_text(exported.stdout)
        return _ncu_summary(request, csv_path, [stem.with_suffix(".ncu-rep"), csv_path])
    csv_path = Path(f"{stem}_nvtx_kern_sum.csv")
    return _nsys_summary(request, csv_path, [stem.with_suffix(".nsys-rep"), csv_path])


def _common(request: ProfileRequest, detail: str) -> dict:
    return dict(op="profile", format=request.spec, backend=request.backend,
                variant=f"{request.op}/{request.variant}", case=f"{request.shape_id}|{detail}")


def _torch_summary(request: ProfileRequest, stem: Path) -> ProfileResult:
    table = json.loads(stem.with_suffix(".operators.json").read_text())
    device = table["device"]
    result = ProfileResult(files=[stem.with_suffix(".trace.json"), stem.with_suffix(".operators.json")])
    for row in table["operators"]:
        result.rows.append({"range": table["range"], **row})
        common = _common(request, row["operator"])
        result.records.append(make_record(metric="self_cpu_time", value=row["self_cpu_us"] * 1e-6, unit="s",
                                          direction="lower", device=device, **common))
        if "self_device_us" in row:
            result.records.append(make_record(metric="self_device_time", value=row["self_device_us"] * 1e-6,
                                              unit="s", direction="lower", device=device, **common))
    return result


NCU_UNITS = {"dram_read_bytes": ("B", "lower"), "dram_write_bytes": ("B", "lower"),
             "dram_pct_peak": ("%", "higher"), "achieved_occupancy_pct": ("%", "higher"),
             "registers_per_thread": ("registers", "lower"), "shared_bytes_per_block": ("B", "lower"),
             "local_spill_bytes": ("B", "lower"), "duration_s": ("s", "lower")}


def _ncu_summary(request: ProfileRequest, csv_path: Path, files: list[Path]) -> ProfileResult:
    launches = reports.parse_ncu_raw_csv(csv_path.read_text())
    result = ProfileResult(files=files)
    case = Case.make(request.op, request.spec, device="cuda", **request.dims)
    declared = get_op(request.op).bytes(case)
    read = sum(launch.get("dram_read_bytes", 0.0) for launch in launches)
    written = sum(launch.get("dram_write_bytes", 0.0) for launch in launches)
    check = reports.byte_model_check(declared, read, written, request.calls)
    for launch in launches:
        result.rows.append({**launch, "byte_model": ""})
        for metric, (unit, direction) in NCU_UNITS.items():
            if metric in launch:
                result.records.append(make_record(metric=metric, value=launch[metric], unit=unit, direction=direction,
                                                  device="cuda", **_common(request, launch["kernel"])))
    result.rows.append({"kernel": "all kernels, per call", "dram_read_bytes": read / request.calls,
                        "dram_write_bytes": written / request.calls,
                        "byte_model": f"{check['ratio']:.3f} x declared" + (" OFF BY >10%" if check["off"] else "")})
    result.records.append(make_record(metric="measured_over_declared_bytes", value=check["ratio"], unit="ratio",
                                      direction="lower", device="cuda", **_common(request, "byte model")))
    return result


def _nsys_summary(request: ProfileRequest, csv_path: Path, files: list[Path]) -> ProfileResult:
    result = ProfileResult(files=files)
    for row in reports.parse_nsys_kernel_csv(csv_path.read_text()):
        result.rows.append(row)
        result.records.append(make_record(metric="kernel_time", value=row["kernel_time_s"], unit="s",
                                          direction="lower", device="cuda",
                                          **_common(request, f"{row['range']}|{row['kernel']}")))
    return result
