"""Bitshift trellis: exact search against brute force, reference vs numba, greedy vs Viterbi,
bit streams, codes and table training."""
import itertools
import json

import numpy as np
import pytest

from quantbench.kernels.formats import FormatError, trellis, trellis_training
from quantbench.kernels.formats import trellis_numba as tcq_numba
from quantbench.kernels.formats.trellis import Trellis


def gaussian(groups, length, seed=0):
    return np.random.default_rng(seed).standard_normal((groups, length)).astype(np.float32)


def all_streams(n_bits):
    return np.array(list(itertools.product((0, 1), repeat=n_bits)), dtype=np.int64)


def linear_states(streams, t: Trellis, T):
    """States of streams that carry L-k start bits before the T symbols (free first state)."""
    states = np.zeros((streams.shape[0], T), np.int64)
    for step in range(T):
        window = streams[:, t.k * step: t.k * step + t.L]
        states[:, step] = (window << np.arange(t.L - 1, -1, -1)).sum(1)
    return states


def circular_states(streams, t: Trellis, T):
    return trellis.stream_states(np.packbits(streams.astype(np.uint8), axis=1), t, T).astype(np.int64)


def costs(x, states, table):
    return ((table[states].astype(np.float64) - x.astype(np.float64)) ** 2).sum(-1)


@pytest.mark.parametrize("k,L,T", [(1, 3, 6), (2, 4, 4), (2, 5, 3), (3, 5, 2)])
def test_free_viterbi_is_the_brute_force_optimum(k, L, T):
    t = Trellis(k, L)
    table = trellis.random_code(L)
    x = gaussian(5, T, seed=k * 10 + L)
    states = linear_states(all_streams(L - k + k * T), t, T)
    for backend in ("numpy", "numba"):
        if backend == "numpy":
            path = trellis.viterbi_path(x, table, t)
        else:
            path = tcq_numba.viterbi_paths(x, table, k, L, np.zeros(len(x), np.int64), False)
        for g in range(len(x)):
            best = costs(x[g], states, table).min()
            assert costs(x[g], path[g], table) == pytest.approx(best, rel=1e-6), (backend, g)


@pytest.mark.parametrize("k,L,T", [(1, 3, 8), (2, 4, 4), (2, 5, 8), (1, 4, 16)])
def test_tail_biting_viterbi_is_the_optimum_for_its_overlap(k, L, T):
    t = Trellis(k, L)
    table = trellis.random_code(L)
    x = gaussian(6, T, seed=L * 7 + T)
    streams = all_streams(k * T)
    states = circular_states(streams, t, T)
    overlaps = states[:, -1] & (t.n_prev - 1)
    encoded = trellis.encode_viterbi(x, table, t)
    assert np.array_equal(encoded, tcq_numba.encode_paths(x, table, t, "viterbi"))
    for g in range(len(x)):
        every = costs(x[g], states, table)
        for o in range(t.n_prev):
            path = trellis.viterbi_path(x[g:g + 1], table, t, np.array([o]))
            assert costs(x[g], path[0], table) == pytest.approx(every[overlaps == o].min(), rel=1e-6)
        own = encoded[g, -1] & (t.n_prev - 1)
        assert costs(x[g], encoded[g], table) == pytest.approx(every[overlaps == own].min(), rel=1e-6)
        assert costs(x[g], encoded[g], table) >= every.min() * (1 - 1e-6)


@pytest.mark.parametrize("k,L", [(2, 9), (3, 9), (2, 6), (3, 7)])
def test_numba_paths_equal_the_numpy_reference(k, L):
    t = Trellis(k, L)
    table = trellis.random_code(L)
    x = gaussian(24, 64, seed=L)
    for encoder in trellis.ENCODERS:
        assert np.array_equal(trellis.encode(x, table, t, encoder), tcq_numba.encode_paths(x, table, t, encoder))


@pytest.mark.parametrize("groups", [1, tcq_numba.SEARCH_BATCH - 1, tcq_numba.SEARCH_BATCH + 1,
                                    2 * tcq_numba.SEARCH_BATCH + 3])
def test_numba_paths_equal_the_reference_across_search_batches(groups):
    """Groups are searched SEARCH_BATCH at a time, their tracebacks interleaved: a last, partial
    batch, and the free and fixed-overlap searches, give the reference's paths."""
    t = Trellis(3, 9)
    table = trellis.random_code(9)
    x = gaussian(groups, 64, seed=groups)
    assert np.array_equal(trellis.encode_viterbi(x, table, t), tcq_numba.encode_paths(x, table, t, "viterbi"))
    overlaps = np.random.default_rng(groups).integers(0, t.n_prev, groups)
    assert np.array_equal(trellis.viterbi_path(x, table, t, overlaps),
                          tcq_numba.viterbi_paths(x, table, 3, 9, overlaps, True))
    assert np.array_equal(trellis.viterbi_path(x, table, t), tcq_numba.viterbi_paths(x, table, 3, 9, overlaps, False))


@pytest.mark.parametrize("k,L", [(3, 9), (2, 9), (3, 7)])
def test_numba_paths_break_ties_as_the_numpy_reference(k, L):
    """A table of eight distinct levels repeated, and inputs on them: equal costs everywhere, where
    the forward pass and the recomputed traceback must both keep the first minimum."""
    t = Trellis(k, L)
    table = np.tile(np.linspace(-1.5, 1.5, 8, dtype=np.float32), t.n_states // 8)
    x = table[np.random.default_rng(L + k).integers(0, 8, (12, 64))]
    x[0] = 0.0
    for encoder in trellis.ENCODERS:
        assert np.array_equal(trellis.encode(x, table, t, encoder), tcq_numba.encode_paths(x, table, t, encoder))
    free = tcq_numba.viterbi_paths(x, table, k, L, np.zeros(len(x), np.int64), False)
    assert np.array_equal(trellis.viterbi_path(x, table, t), free)


@pytest.mark.parametrize("k,L", [(2, 9), (3, 6)])
def test_paths_survive_packing_and_decode_to_their_values(k, L):
    t = Trellis(k, L)
    table = trellis.random_code(L)
    x = gaussian(16, 64, seed=3)
    for encoder in trellis.ENCODERS:
        path = trellis.encode(x, table, t, encoder)
        codes = trellis.pack_stream(path, k)
        assert codes.shape == (16, 64 * k // 8)
        assert np.array_equal(tcq_numba.pack_stream(path, k), codes)
        assert np.array_equal(trellis.stream_states(codes, t, 64), path)
        values = np.zeros((16, 64), np.float32)
        for g in range(16):
            column = np.zeros((64, 1), np.float32)
            tcq_numba.group_levels(codes[g], table, k, L, 64, 0, column)
            values[g] = column[:, 0]
        assert np.array_equal(values, table[path])


def test_greedy_is_never_better_than_viterbi():
    t = Trellis(2, 8)
    table = trellis.random_code(8)
    x = gaussian(64, 64, seed=5)
    greedy = trellis.encode_greedy(x, table, t)
    viterbi = trellis.encode_viterbi(x, table, t)
    # against the exact search with greedy's own overlap: never better, by construction
    exact = trellis.viterbi_path(x, table, t, greedy[:, -1] & (t.n_prev - 1))
    assert (costs(x, greedy, table) >= costs(x, exact, table) * (1 - 1e-6)).all()
    assert (costs(x, greedy, table) >= costs(x, viterbi, table)).all()
    assert costs(x, greedy, table).sum() > 2 * costs(x, viterbi, table).sum()


def test_greedy_paths_are_tail_biting():
    t = Trellis(3, 9)
    path = trellis.encode_greedy(gaussian(8, 32), trellis.random_code(9), t)
    assert np.array_equal(trellis.stream_states(trellis.pack_stream(path, 3), t, 32), path)


def test_hash_code_is_nearly_standard_gaussian():
    values = trellis.hash_code(np.arange(1 << 16))
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01
    assert len(np.unique(values)) > 500  # sums of four bytes: 1021 possible levels


def test_training_is_reproducible_and_beats_the_random_code():
    t = Trellis(2, 6)
    plan = trellis_training.TrainingPlan(values=1 << 14, sequence=256, iterations=8)
    first = trellis_training.train_table(t, plan)
    assert np.array_equal(first, trellis_training.train_table(t, plan))
    assert np.array_equal(first, -first[::-1])  # antisymmetric
    x = gaussian(32, 256, seed=11)
    trained = costs(x, trellis.encode_viterbi(x, first, t), first).sum()
    random = costs(x, trellis.encode_viterbi(x, trellis.random_code(6), t), trellis.random_code(6)).sum()
    assert trained < 0.85 * random


def test_trained_tables_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(trellis_training, "plan_for",
                        lambda t: trellis_training.TrainingPlan(values=1 << 12, sequence=128, iterations=3))
    t = Trellis(3, 5)
    trellis_training.trained_table.cache_clear()
    try:
        table = trellis_training.trained_table(t)
        files = list(tmp_path.glob("tcq_table_k3_L5_*.npy"))
        assert len(files) == 1 and np.array_equal(np.load(files[0]), table)
        trellis_training.trained_table.cache_clear()
        files[0].write_bytes(b"not a numpy file")  # a corrupt cache file is replaced, not trusted
        assert np.array_equal(trellis_training.trained_table(t), table)
        assert np.array_equal(np.load(files[0]), table)
    finally:
        trellis_training.trained_table.cache_clear()


@pytest.mark.parametrize("k,L", [(0, 5), (5, 9), (2, 2), (2, 17)])
def test_bad_trellis_parameters_are_rejected(k, L):
    with pytest.raises(FormatError, match="trellis"):
        Trellis(k, L)


def test_streams_too_short_for_the_state_are_rejected():
    with pytest.raises(FormatError, match="needs at least 12 bits"):
        Trellis(2, 12).check_length(4)


@pytest.mark.parametrize("k", [2, 3])
def test_the_shipped_tables_are_used_and_are_trained_fixed_points(k, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QUANTBENCH_CACHE", str(tmp_path))  # no disk cache to fall back on
    t = Trellis(k, 9)
    trellis_training.trained_table.cache_clear()
    try:
        table = trellis_training.trained_table(t)
    finally:
        trellis_training.trained_table.cache_clear()
    assert "training" not in capsys.readouterr().err and not list(tmp_path.iterdir())
    assert table.shape == (512,) and np.array_equal(table, -table[::-1])
    # one more Lloyd pass over the plan's own training data barely moves a converged table
    # (max 0.0064 at k=2) and moves the random start it began from by 0.36
    data = trellis_training.training_data(t, trellis_training.plan_for(t))
    moved = np.abs(trellis_training.lloyd_over_paths(data, t, 1, table) - table).max()
    start = trellis_training.antisymmetric(trellis.random_code(9))
    assert moved < 0.02 < 0.1 < np.abs(trellis_training.lloyd_over_paths(data, t, 1, start) - start).max()


def test_a_shipped_table_of_another_plan_or_unreadable_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(trellis_training, "SHIPPED_DIR", tmp_path)
    t = Trellis(2, 5)
    plan = trellis_training.plan_for(t)
    path = trellis_training.shipped_path(t)
    entry = {"k": 2, "L": 5, "plan": plan.tag, "table": [float(v) for v in np.linspace(-1, 1, 32)]}
    path.write_text(json.dumps(entry))
    assert np.array_equal(trellis_training._read_shipped(t, plan), np.linspace(-1, 1, 32).astype(np.float32))
    for bad in ({**entry, "plan": "n1_T1_it1_r1.8_v0"}, {**entry, "table": entry["table"][:31]},
                {**entry, "table": [float("nan")] * 32}):
        path.write_text(json.dumps(bad))
        assert trellis_training._read_shipped(t, plan) is None
    path.write_text("not json")
    assert trellis_training._read_shipped(t, plan) is None


def test_train_codebook_gaussian_remakes_the_shipped_table(tmp_path, monkeypatch, capsys):
    from quantbench.harness.cli import main

    monkeypatch.setattr(trellis_training, "SHIPPED_DIR", tmp_path)
    monkeypatch.setattr(trellis_training, "plan_for",
                        lambda t: trellis_training.TrainingPlan(values=1 << 12, sequence=128, iterations=3))
    try:
        assert main(["train-codebook", "--gaussian", "--bits", "2"]) == 0
        entry = json.loads((tmp_path / "trained-k2-L9.json").read_text())
        assert entry["command"] == "quantbench train-codebook --gaussian --bits 2" and len(entry["table"]) == 512
        assert np.array_equal(trellis_training.trained_table(Trellis(2, 9)), np.asarray(entry["table"], np.float32))
    finally:
        trellis_training.trained_table.cache_clear()
    assert main(["train-codebook", "--gaussian", "--bits", "4"]) == 2
    assert "the TCQ formats have 2 or 3 bits" in capsys.readouterr().err
    assert main(["train-codebook", "--bits", "2"]) == 2
    assert "--side and --name required" in capsys.readouterr().err
