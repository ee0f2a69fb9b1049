"""Every variant of every op that can run on this machine's device, on the small suite case of
each format the op serves (`suite_cases(mode="small")`: the list asv and pytest-benchmark run),
checked against the op's reference with the op's own check. The variants come from the registry,
so a new variant or format is tested without an edit here.

GPU kernels run here when a CUDA device is present (compiled for real). Without one, they run in
the Triton interpreter or the numba-cuda simulator in their own tests (test_*_gpu.py, with tiny
shapes: emulation is too slow for the suite's cases), and the coverage matrix reports them."""
import pytest
import torch

from quantbench.harness.suite_cases import suite_cases
from quantbench.kernels.registry import Unavailable

ON_GPU = torch.cuda.is_available()


def runnable_here():
    cases = [c for c in suite_cases(mode="small") if c.variant.availability() is None
             and (ON_GPU or c.variant.device == "cpu")]
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("suite_case", runnable_here())
def test_variant_matches_the_reference(suite_case):
    try:
        fn, case = suite_case.prepare(validate=True)
    except Unavailable as exc:  # a library kernel that cannot take this case's shape here says why
        pytest.skip(str(exc))
    assert case.device == suite_case.variant.run_device()
