"""Reading the tools' CSV exports, and checking an op's byte model against the DRAM bytes ncu measured.

ncu (`--csv --page raw`): a header row of metric names, a row of units, then one row per kernel
launch. nsys (`stats --report nvtx_kern_sum --format csv`): one row per (NVTX range, kernel).
Both parsers still wait for a report captured on a GPU to be tested on (none has been committed).
"""
from __future__ import annotations

import csv
import io

BYTE_MODEL_TOLERANCE = 0.10  # measured/declared - 1 beyond this flags the op's byte model

# ncu metric -> the summary figure it goes into (in bytes, seconds or %)
NCU_SUMMARY = {
    "dram__bytes_read.sum": "dram_read_bytes",
    "dram__bytes_write.sum": "dram_write_bytes",
    "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed": "dram_pct_peak",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved_occupancy_pct",
    "launch__registers_per_thread": "registers_per_thread",
    "launch__shared_mem_per_block_static": "shared_bytes_per_block",
    "launch__shared_mem_per_block_dynamic": "shared_bytes_per_block",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum": "local_spill_bytes",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum": "local_spill_bytes",
    "gpu__time_duration.sum": "duration_s",
}
UNIT_SCALES = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9,
               "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1, "ns": 1e-9, "us": 1e-6, "ms": 1e-3}


def _number(text: str) -> float:
    return float(text.replace(",", "")) if text.strip() not in ("", "n/a") else 0.0


def parse_ncu_raw_csv(text: str) -> list[dict]:
    """One summary per kernel launch: its name and the NCU_SUMMARY figures (summed where two metrics
    make one figure: read + write local bytes, static + dynamic shared memory), in bytes and seconds."""
    rows = list(csv.reader(io.StringIO(text)))
    start = next(i for i, row in enumerate(rows) if "Kernel Name" in row)
    header, units, launches = rows[start], rows[start + 1], rows[start + 2:]
    out = []
    for values in launches:
        if len(values) != len(header):
            continue
        cell = dict(zip(header, values))
        summary = {"kernel": cell["Kernel Name"]}
        for metric, name in NCU_SUMMARY.items():
            if metric in cell:
                scale = UNIT_SCALES.get(units[header.index(metric)], 1)
                summary[name] = summary.get(name, 0.0) + _number(cell[metric]) * scale
        out.append(summary)
    return out


def parse_nsys_kernel_csv(text: str) -> list[dict]:
    """(range, kernel, total kernel time in s, instances) per row of nsys's nvtx_kern_sum report."""
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        name = row.get("NVTX Range") or row.get("Range") or ""
        out.append({"range": name.lstrip(":"), "kernel": row.get("Kernel Name", ""),
                    "kernel_time_s": _number(row.get("Total Time (ns)", "0")) * 1e-9,
                    "instances": int(_number(row.get("Instances", row.get("Num Calls", "0"))))})
    return out


def byte_model_check(declared_bytes: float, read_bytes: float, written_bytes: float, calls: int = 1,
                     tolerance: float = BYTE_MODEL_TOLERANCE) -> dict:
    """The DRAM bytes ncu measured over `calls` calls against the op's declared bytes per call:
    measured per call, their ratio, and whether it is off by more than `tolerance`."""
    if declared_bytes <= 0 or calls < 1:
        raise ValueError("declared bytes and calls must be positive")
    measured = (read_bytes + written_bytes) / calls
    ratio = measured / declared_bytes
    return {"declared_bytes": declared_bytes, "measured_bytes": measured, "ratio": ratio,
            "off": abs(ratio - 1) > tolerance}
