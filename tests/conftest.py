"""Session set-up for the tests.

Triton kernels run in Triton's interpreter on a machine without a GPU: TRITON_INTERPRET must be
set before triton is first imported (it is read at import), so it is set here, before any test
module imports anything. On a GPU machine the kernels are compiled for real. Tests that check the
"unavailable" message unset it with monkeypatch; the registry reads it at call time.

Tests never write into the repository's results/: each test gets its own results folder.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("QUANTBENCH_PEAK_BYTES", str(8 << 20))


@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test: on a busy 2-core machine small forwards run many
    times slower with more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Markers (registered in pyproject.toml): `cuda` tests need a CUDA device, `cpu_only` tests check
    a machine without one; each is skipped on the other kind of machine. `emulated` tests run on both."""
    if torch.cuda.is_available():
        marker, skip = "cpu_only", pytest.mark.skip(reason="checks a machine without a CUDA device; this one has one")
    else:
        marker, skip = "cuda", pytest.mark.skip(reason="needs a CUDA device; this machine has none")
    for item in items:
        if item.get_closest_marker(marker) is not None:
            item.add_marker(skip)
