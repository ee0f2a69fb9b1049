"""Tests never write into the repository's results/: each test gets its own results folder."""
import pytest


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("QUANTBENCH_PEAK_BYTES", str(8 << 20))
