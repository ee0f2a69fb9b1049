"""`quantbench throughput --profile torch|nvtx|nsys`: one decode step per KV policy and attention
backend profiled instead of timed (harness/profiling/decode_step.py). A helper of the throughput
command, not a command itself."""
from __future__ import annotations

import shlex
import subprocess
import sys

from quantbench.harness.errors import UserError
from quantbench.harness.profiling import decode_step, reports, tool_commands
from quantbench.harness.profiling.session import profile_stem
from quantbench.harness.results import current_command, make_record

from .common import emit, store

TORCH_ROWS_SHOWN = 20


def profile_decode(model, policies, backends, depth: int, args) -> int:
    if args.profile == "nsys":
        return _under_nsys(args)
    device = model.device.type
    for policy in policies:
        kv = policy.spec if policy is not None else "none"
        for attn in backends:
            if args.profile == "nvtx":
                decode_step.run_ranged_step(model, policy, attn, depth, args.seed)
                print(f"decode step kv={kv} attn={attn} depth={depth} ran in NVTX ranges", file=sys.stderr)
                continue
            trace = profile_stem(f"throughput-{kv}-{attn}-d{depth}-torch").with_suffix(".trace.json")
            rows = decode_step.profile_step_with_torch(model, policy, attn, depth, trace, args.seed)
            emit(rows[:TORCH_ROWS_SHOWN], ["operator", "calls", "self_cpu_us", "cpu_total_us"], args,
                 f"one decode step, kv {kv}, attention {attn}, depth {depth}, on {device}; trace: {trace}")
            store([make_record(op="profile", format=kv, backend="torch", variant=f"decode_step/{attn}",
                               case=f"d{depth}|{r['operator']}", metric="self_cpu_time", value=r["self_cpu_us"] * 1e-6,
                               unit="s", direction="lower", device=device) for r in rows], args)
    return 0


def _child_argv() -> list[str]:
    """This command again, with `--profile nvtx`: what nsys runs."""
    argv = shlex.split(current_command())[1:]
    out, skip = [], False
    for part in argv:
        if skip:
            skip = False
            continue
        if part == "--profile":
            skip = True
            continue
        if not part.startswith("--profile="):
            out.append(part)
    return [sys.executable, "-m", "quantbench.harness.cli", *out, "--profile", "nvtx", "--no-store"]


def _under_nsys(args) -> int:
    missing = tool_commands.missing_tool("nsys")
    if missing:
        print(missing, file=sys.stderr)
        return 1
    stem = profile_stem("throughput-decode-nsys")
    stem.parent.mkdir(parents=True, exist_ok=True)
    report = stem.with_suffix(".nsys-rep")
    for argv in (tool_commands.nsys_profile(_child_argv(), None, report), tool_commands.nsys_export(report, stem)):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"{argv[0]} {argv[1]} exited with status {done.returncode}")
    rows = reports.parse_nsys_kernel_csv((stem.parent / f"{stem.name}_nvtx_kern_sum.csv").read_text())
    emit(rows, ["range", "kernel", "kernel_time_s", "instances"], args, f"kernel time per NVTX range; report: {report}")
    store([make_record(op="profile", format="decode", backend="nsys", variant=r["range"], case=r["kernel"],
                       metric="kernel_time", value=r["kernel_time_s"], unit="s", direction="lower", device="cuda")
           for r in rows], args)
    return 0
