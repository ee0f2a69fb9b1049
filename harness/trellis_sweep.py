"""Trellis-size sweep of the TCQ code: normalized MSE per bits and L on seeded N(0,1) sequences,
beside the Lloyd-Max optimum and the Shannon bound 4^-b, and encode / decode throughput per
encoder and backend as a function of L.

MSE columns (all tail-biting streams, exactly k bits per value, Viterbi unless named):
  trained / random / hash  the three codes (trained: Lloyd-trained table, up to `train_max_L`)
  greedy                   the trained code (random beyond train_max_L) with the greedy encoder
  free_start               the trained code with an unconstrained first state: the stream then
                           needs L-k more bits per sequence, which the column does not count
                           (the usual convention of trellis MSE figures)
"""
from __future__ import annotations

import numpy as np
import torch

from quantbench.kernels import formats
from quantbench.kernels.formats import trellis
from quantbench.kernels.formats.lloyd_max import gaussian_mse, shannon_bound
from quantbench.kernels.formats.trellis_codes import code_table
from quantbench.kernels.formats.turbo_tcq import MAX_TRAINED_L

from . import results as results_store
from .timing import TimingConfig, time_callable

MSE_COLUMNS = ["bits", "L", "states", "trained", "random", "hash", "greedy", "free_start", "lloyd_max", "shannon"]
SPEED_COLUMNS = ["op", "bits", "L", "encoder", "backend", "values", "time_ms", "mvalues_per_s"]


def gaussian_sequences(values: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((max(1, values // length), length)).astype(np.float32)


def nmse(x: np.ndarray, states: np.ndarray, table: np.ndarray) -> float:
    return float(trellis.path_distortion(x, states, table).sum() / np.square(x.astype(np.float64)).sum())


def mse_rows(bits_list, Ls, length: int = 256, values: int = 1 << 15, seed: int = 0,
             train_max_L: int = MAX_TRAINED_L) -> list[dict]:
    from quantbench.kernels.formats import trellis_numba as tcq_numba

    x = gaussian_sequences(values, length, seed)
    rows = []
    for bits in bits_list:
        for L in Ls:
            t = trellis.Trellis(bits, L)
            row = {"bits": bits, "L": L, "states": t.n_states, "lloyd_max": gaussian_mse(bits),
                   "shannon": shannon_bound(bits)}
            for code in ("trained", "random", "hash"):
                if code == "trained" and L > train_max_L:
                    row[code] = None
                    continue
                table = code_table(t, code)
                row[code] = nmse(x, tcq_numba.encode_paths(x, table, t, "viterbi"), table)
            table = code_table(t, "trained" if row["trained"] is not None else "random")
            row["greedy"] = nmse(x, tcq_numba.encode_paths(x, table, t, "greedy"), table)
            if row["trained"] is not None:
                free = np.zeros(x.shape[0], np.int64)
                row["free_start"] = nmse(x, tcq_numba.viterbi_paths(x, table, bits, L, free, False), table)
            rows.append(row)
    return rows


def _encoder_fn(backend: str, encoder: str, v: np.ndarray, table: np.ndarray, t: trellis.Trellis):
    if backend == "numpy":
        return lambda: trellis.encode(v, table, t, encoder)
    from quantbench.kernels.formats import trellis_numba as tcq_numba
    return lambda: tcq_numba.encode_paths(v, table, t, encoder)


def speed_rows(bits_list, Ls, encoders=("viterbi", "greedy"), backends=("numpy", "numba"), dim: int = 64,
               budget_s: float = 0.3, work: int = 1 << 27, seed: int = 0) -> list[dict]:
    """Encode (the search alone, on rotated unit-variance groups of `dim`) and decode (the whole
    format decode) throughput. Viterbi gets about `work` state updates per call (at least 8 groups),
    greedy and decode a fixed 4096 groups."""
    from quantbench.kernels.codecs import tcq_numba

    config = TimingConfig(budget_s=budget_s, min_repeats=3, warmup=1)
    rows = []
    for bits in bits_list:
        for L in Ls:
            t = trellis.Trellis(bits, L)
            code = "trained" if L <= MAX_TRAINED_L else "random"
            table = code_table(t, code)
            for encoder in encoders:
                groups = 4096 if encoder == "greedy" else max(8, work // (2 * dim * t.n_states))
                v = gaussian_sequences(groups * dim, dim, seed)
                for backend in backends:
                    fn = _encoder_fn(backend, encoder, v, table, t)
                    rows.append(_speed_row("tcq_encode", bits, L, encoder, backend, v.size,
                                           time_callable(fn, "cpu", f"tcq_encode/{backend}/{encoder}", config)))
            if f"turbo{bits}_tcq" not in formats.names():
                continue  # a trellis width without a format: encode rows only
            fmt = formats.get(f"turbo{bits}_tcq", L=L, code=code)
            x = torch.from_numpy(gaussian_sequences(4096 * dim, dim, seed))
            packed = fmt.encode(x)
            out = torch.empty(x.shape)
            decoders = {"torch": lambda: fmt.decode(packed), "numba": lambda: tcq_numba.decode(fmt, packed, out)}
            for backend, fn in decoders.items():
                rows.append(_speed_row("dequantize", bits, L, "", backend, x.numel(),
                                       time_callable(fn, "cpu", f"dequantize/{backend}", config)))
    return rows


def _speed_row(op, bits, L, encoder, backend, values, timing) -> dict:
    return {"op": op, "bits": bits, "L": L, "encoder": encoder, "backend": backend, "values": values,
            "time_ms": timing.median * 1e3, "mvalues_per_s": values / timing.median / 1e6,
            "samples": timing.samples_s}


def mse_records(rows: list[dict], length: int, values: int) -> list[dict]:
    records = []
    for row in rows:
        for column in ("trained", "random", "hash", "greedy", "free_start"):
            if row.get(column) is None:
                continue
            code = "trained" if row["trained"] is not None else "random"
            variant = {"greedy": "greedy", "free_start": "viterbi_free_start"}.get(column, "viterbi")
            spec = f"turbo{row['bits']}_tcq:L={row['L']}:code={column if column in trellis.CODES else code}"
            records.append(results_store.make_record(
                op="tcq_mse", format=spec, backend="numba", variant=variant,
                case=f"gaussian,seq={length},values={values}", metric="nmse", value=row[column], unit="ratio",
                direction="lower"))
    return records


def speed_records(rows: list[dict], dim: int) -> list[dict]:
    return [results_store.make_record(
        op=row["op"], format=f"turbo{row['bits']}_tcq:L={row['L']}", backend=row["backend"],
        variant=row["encoder"] or "decode", case=f"values={row['values']},dim={dim}", metric="values_per_s",
        value=row["values"] / np.median(row["samples"]), unit="values/s", direction="higher",
        samples=[row["values"] / s for s in row["samples"]]) for row in rows]


def parse_range(text: str) -> list[int]:
    """'6-16' or '6,9,12' (or a mix) -> sorted ints."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return sorted(out)
