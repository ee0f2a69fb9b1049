"""`quantbench train-codebook`: levels for the turbo formats trained on the model's own K or V;
`--gaussian`: the TCQ formats' default tables (trained on N(0, 1)) remade into the package."""
from __future__ import annotations

from pathlib import Path

from quantbench.harness.codebook_training import TCQ_L, WEIGHTS, train
from quantbench.harness.errors import UserError
from quantbench.harness.model import load_model

from .common import positive_int, resolve_device


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-codebook", help="train turbo levels on the model's own keys or values (weighted Lloyd; q2: by the "
                               "queries' energy per coordinate), written as a table for levels=<name>",
        description="Samples come from GPTQ's calibration sequences (the end of the default corpus). The table is "
                    "written to --out (default: the package's kernels/formats/codebooks) as <name>.json; "
                    "use it as turbo3:levels=<name> ($QUANTBENCH_CODEBOOKS is searched first).")
    p.add_argument("--gaussian", action="store_true",
                   help="remake the package's default TCQ table for turbo<bits>_tcq (L = 9, trained on seeded "
                        "N(0, 1), no model; about 40 s on 2 cores)")
    p.add_argument("--side", choices=("k", "v"),
                   help="train on the model's keys or values (required but with --gaussian)")
    p.add_argument("--bits", type=positive_int, default=3, help="2, 3 or 4 (default 3)")
    p.add_argument("--weight", choices=WEIGHTS, default="q2", help="sample weights (default q2; v: none)")
    p.add_argument("--tcq", action="store_true",
                   help="a trellis table for turbo<bits>_tcq:code=<name> (L = 9), fine-tuned from the Gaussian one")
    p.add_argument("--name", help="the table's name, e.g. smollm2-k3-q2 (required but with --gaussian)")
    p.add_argument("--out", metavar="DIR", default=None, help="folder to write <name>.json to")
    p.add_argument("-m", "--model", default=None, help="GGUF file or Hugging Face folder (default: embedded)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.gaussian:
        return ship_gaussian(args.bits)
    missing = [flag for flag, value in (("--side", args.side), ("--name", args.name)) if value is None]
    if missing:
        raise UserError(f"train-codebook: {' and '.join(missing)} required (or --gaussian)")
    model = load_model(args.model, device=resolve_device(args.device))
    table = train(model, args.side, args.bits, args.weight, args.name, Path(args.out) if args.out else None,
                  Path(args.model).name if args.model else "", tcq=args.tcq)
    if args.tcq:
        print(f"{table['path']}: TCQ table k={table['k']} L={table['L']} fine-tuned on {table['sequences']} "
              f"{table['side'].upper()} vectors ({table['iterations']} passes): turbo{table['k']}_tcq:code={args.name}")
        return 0
    print(f"{table['path']}: {table['bits']}-bit levels trained on {table['samples']} {table['side'].upper()} "
          f"coordinates ({table['weight']} weights)")
    print("levels: " + ", ".join(f"{v:.4f}" for v in table["levels"]))
    print(f"weighted MSE on the samples: {table['weighted_mse']:.5g} (Gaussian Lloyd-Max levels: "
          f"{table['gaussian_weighted_mse']:.5g})")
    return 0


def ship_gaussian(bits: int) -> int:
    from quantbench.kernels.formats.trellis import Trellis
    from quantbench.kernels.formats.trellis_training import ship_table

    if bits not in (2, 3):
        raise UserError(f"--bits {bits}: the TCQ formats have 2 or 3 bits")
    path = ship_table(Trellis(bits, TCQ_L))
    print(f"{path}: the Gaussian-trained TCQ table k={bits} L={TCQ_L} (turbo{bits}_tcq's default code=trained)")
    return 0
