"""`quantbench gpu-check` (harness/gpu_check.py): without a CUDA device, one line and exit 1; its
cases and model configuration are valid inputs of the ops and the model. The steps themselves run
only on a CUDA machine (the `cuda` test)."""
import pytest

from quantbench.harness import gpu_check
from quantbench.harness.cli import main
from quantbench.harness.model.config import ModelConfig
from quantbench.kernels.registry import get_op, variants


@pytest.mark.cpu_only
def test_without_a_gpu_it_says_so_in_one_line(capsys):
    assert main(["gpu-check", "--no-store"]) == 1
    assert capsys.readouterr().err.strip() == "unavailable: no CUDA device"


def test_unknown_steps_are_refused(capsys):
    assert main(["gpu-check", "--steps", "copy,warp"]) == 2
    assert "unknown step warp" in capsys.readouterr().err


def test_its_cases_are_valid_and_have_gpu_variants():
    get_op("attn_decode").check_dims(gpu_check.ATTENTION_CASE)
    for dims in gpu_check.GEMV_SHAPES:
        get_op("gemv").check_dims(dims)
    for spec in gpu_check.ATTENTION_FORMATS:
        assert variants(op="attn_decode", format=spec, backend="triton"), spec
    for spec in gpu_check.GEMV_FORMATS:
        assert variants(op="gemv", format=spec, backend="triton"), spec
    names = {v.name for v in variants(op="attn_decode", format="turbo3", backend="cuda")}
    assert names == {"const", "shared", "registers"}
    config = ModelConfig(**gpu_check.DECODE_CONFIG)
    assert config.head_dim == gpu_check.ATTENTION_CASE["dim"]


@pytest.mark.cuda
def test_the_whole_check_passes_on_a_gpu(tmp_path):
    assert main(["gpu-check", "--results", str(tmp_path / "gpu.jsonl")]) == 0
