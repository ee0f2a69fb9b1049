"""PTX to SASS with the CUDA tools Triton ships (triton/backends/nvidia/bin): ptxas -v for registers,
stack, spills and static shared memory, cuobjdump -sass for the instruction mix.

The tools are found the way Triton finds them (its knobs: $TRITON_PTXAS_PATH etc., then the bundled
binaries), so a kernel is assembled by the same ptxas that builds it for a real launch.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TOOL_TIMEOUT_S = 300

# SASS opcodes (the mnemonic before the first '.') counted into each class of the instruction mix
SASS_CLASSES = {
    "global_loads": ("LDG",),
    "global_stores": ("STG",),
    "shared_accesses": ("LDS", "STS", "LDSM"),
    "local_accesses": ("LDL", "STL"),  # spills, and arrays ptxas could not keep in registers
    "fma": ("FFMA", "HFMA2", "DFMA"),
    "float_ops": ("FADD", "FMUL", "FMNMX", "HADD2", "HMUL2", "MUFU", "FSEL", "FSETP"),
    "integer_ops": ("IMAD", "IADD3", "LOP3", "SHF", "LEA", "IMNMX", "ISETP", "SEL", "PRMT", "BFE", "BFI"),
    "shuffles": ("SHFL",),
}
_SASS_LINE = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]\s+)?([A-Z][A-Z0-9_]*)")


class ToolError(RuntimeError):
    """A CUDA tool that is missing or failed; the message is one line."""


def summary(exc: Exception) -> str:
    """One line for a compiler's exception: its first line and, when the cause comes last (Triton
    prints the source first), its last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(exc).__name__}: {text}"


def tool_path(name: str) -> str:
    """Path of a CUDA tool as Triton resolves it: ptxas, ptxas-blackwell, cuobjdump, nvdisasm."""
    try:
        from triton import knobs
    except ImportError:
        raise ToolError("triton not installed (it ships ptxas and cuobjdump)") from None
    try:
        return getattr(knobs.nvidia, name.replace("-", "_")).path
    except RuntimeError:  # knobs raise when neither $TRITON_<TOOL>_PATH nor the bundled binary works
        raise ToolError(f"{name} not found (Triton's bundled copy, or $TRITON_{name.upper().replace('-', '_')}_PATH)"
                        ) from None


@dataclass
class Resources:
    """What ptxas reports for one kernel, and the SASS it produced."""

    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    static_shared_bytes: int
    sass_mix: dict[str, int] = field(default_factory=dict)

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes


def parse_ptxas_log(log: str, kernel: str) -> dict[str, int]:
    """The `ptxas -v` figures of entry function `kernel`: registers, stack, spill stores and loads, smem."""
    section = log.split(f"Function properties for {kernel}", 1)
    if len(section) < 2:
        raise ToolError(f"ptxas -v printed no properties for {kernel}")
    text = section[1].split("Compiling entry function", 1)[0]

    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    registers = re.search(r"Used (\d+) registers", text)
    if registers is None:
        raise ToolError(f"ptxas -v printed no register count for {kernel}")
    return {"registers": int(registers.group(1)), "stack_bytes": number(r"(\d+) bytes stack frame"),
            "spill_store_bytes": number(r"(\d+) bytes spill stores"),
            "spill_load_bytes": number(r"(\d+) bytes spill loads"), "static_shared_bytes": number(r"(\d+) bytes smem")}


def sass_mix(sass: str) -> dict[str, int]:
    """Instruction counts per class of SASS_CLASSES, and `instructions` in all (NOPs left out)."""
    opcodes = Counter()
    for line in sass.splitlines():
        found = _SASS_LINE.match(line)
        if found:
            opcodes[found.group(1).split(".")[0]] += 1
    opcodes.pop("NOP", None)
    mix = {name: sum(opcodes[op] for op in ops) for name, ops in SASS_CLASSES.items()}
    mix["instructions"] = sum(opcodes.values())
    return mix


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{what}: {exc}") from None
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if line.strip()), f"exit status {done.returncode}")
        raise ToolError(f"{what}: {first.strip()}")
    return done


def assemble(ptx: str, kernel: str, gpu_name: str, ptxas: str, flags: tuple[str, ...] = ()) -> Resources:
    """Assemble PTX for `gpu_name` (sm_90a, ...) with `ptxas -v` and disassemble the cubin."""
    with tempfile.TemporaryDirectory(prefix="quantbench-compile-") as folder:
        source, cubin = Path(folder) / "kernel.ptx", Path(folder) / "kernel.cubin"
        source.write_text(ptx)
        log = _run([ptxas, "-v", *flags, f"--gpu-name={gpu_name}", str(source), "-o", str(cubin)], "ptxas")
        figures = parse_ptxas_log(log.stderr + log.stdout, kernel)
        sass = _run([tool_path("cuobjdump"), "-sass", str(cubin)], "cuobjdump").stdout
    return Resources(**figures, sass_mix=sass_mix(sass))
