"""pytest-benchmark suite: kernel cases from `harness.suite_cases` (the list asv runs too).

Run with `python -m pytest suites/ --benchmark-only` (the normal test run, testpaths=["tests"],
does not collect this folder); $QUANTBENCH_SUITE_SHAPES=small for small shapes.
"""
import pytest

from quantbench.harness.suite_cases import suite_cases


def pytest_generate_tests(metafunc):
    if "suite_case" in metafunc.fixturenames:
        cases = suite_cases()
        metafunc.parametrize("suite_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def copy_bandwidth():
    """Measured copy bandwidth of a device in bytes/s (one measurement per device per session)."""
    from quantbench.harness.peak import copy_bandwidth as measure

    return measure
