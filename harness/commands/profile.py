"""`quantbench profile`: one case in a child process under ncu, nsys or the torch profiler, limited to
the case's NVTX range; `--dry-run` prints the commands to paste on a GPU machine."""
from __future__ import annotations

import shlex
import sys

from quantbench.harness.errors import UserError
from quantbench.harness.profiling import session, tool_commands
from quantbench.kernels.registry import get_op

from .bench import parse_shape
from .common import add_output_option, add_store_options, emit, positive_int, store

COLUMNS = {"torch": ["operator", "calls", "self_cpu_us", "cpu_total_us", "self_device_us"],
           "ncu": ["kernel", "dram_read_bytes", "dram_write_bytes", "dram_pct_peak", "achieved_occupancy_pct",
                   "registers_per_thread", "shared_bytes_per_block", "local_spill_bytes", "duration_s", "byte_model"],
           "nsys": ["range", "kernel", "kernel_time_s", "instances"]}
TORCH_ROWS_SHOWN = 25


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="profile one case under ncu, nsys or torch.profiler, within its NVTX range")
    p.add_argument("--op", required=True)
    p.add_argument("--format", required=True, help="one format spec")
    p.add_argument("--backend", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--shape", default=None, metavar="K=V,...", help="case dimensions (default: the op's first case)")
    p.add_argument("--tool", required=True, choices=tool_commands.TOOLS)
    p.add_argument("--calls", type=positive_int, default=3, help="calls inside the profiled range (default 3)")
    p.add_argument("--dry-run", action="store_true", help="print the commands (to paste on a GPU machine); run nothing")
    add_output_option(p)
    add_store_options(p, threads=False)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.shape:
        dims = parse_shape(args.shape)
    else:
        try:
            dims = dict(get_op(args.op).default_cases(args.format)[0].dims)
        except KeyError as exc:
            raise UserError(exc.args[0]) from None
    request = session.ProfileRequest(args.op, args.format, args.backend, args.variant, dims, args.tool, args.calls)
    session.check_request(request)
    if args.dry_run:
        request.python = "python"
        for argv in session.commands(request):
            print(shlex.join(argv))
        return 0
    missing = tool_commands.missing_tool(args.tool)
    if missing:
        print(missing, file=sys.stderr)
        return 1
    result = session.run_profile(request)
    rows = result.rows[:TORCH_ROWS_SHOWN] if args.tool == "torch" else result.rows
    emit(rows, COLUMNS[args.tool], args, f"{request.range} under {args.tool}, {args.calls} calls; report: "
         + ", ".join(str(f) for f in result.files))
    store(result.records, args)
    return 0
