"""`quantbench compile` (harness/compile_check/): the GPU kernels compiled for sm_90 on this CPU with
Triton's compiler and bundled ptxas / cuobjdump, and numba-cuda's kernels through NVVM where it is
installed. A kernel that the interpreter accepts but the compiler rejects, or one that spills, fails
here instead of on a GPU user's machine.

The Triton and numba-cuda variants are the registry's, each at the suite's small case of its op
(every variant and format), plus the head_dim 128 attention cases and the full 16-row GEMM tiles,
which once spilled. The
compile runs in one child process without TRITON_INTERPRET (conftest sets it for this session,
and Triton reads it at import).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from emulation import output_tail

from quantbench.harness.cli import main
from quantbench.harness.commands.compile import parse_targets
from quantbench.harness.errors import UserError
from quantbench.kernels.registry import variants

pytest.importorskip("triton")

HEAD_DIM_128 = dict(batch=1, heads=32, kv_heads=8, n=1, ctx=64, dim=128)
# 16 activation rows a program, as the model's prefill GEMMs; k = 256 holds one k-quant super-block
FULL_GEMM_TILE = dict(m=16, n=64, k=256)

CHILD = textwrap.dedent(f"""
    import json

    from quantbench.harness.compile_check import sweep, triton_kernels
    from quantbench.harness.compile_check.capture import capture_launches
    from quantbench.harness.results import validate
    from quantbench.harness.suite_cases import SuiteCase, suite_cases
    from quantbench.kernels.registry import Case, variants

    cases = [c for c in suite_cases(mode="small") if sweep.gpu_toolchain(c)]
    for v in variants(op="attn_decode", backend="triton"):
        for spec in v.format_names():
            cases.append(SuiteCase(v, spec, Case.make("attn_decode", spec, **{HEAD_DIM_128!r})))
    for v in variants(op="gemm", backend="triton"):
        for spec in v.format_names():
            cases.append(SuiteCase(v, spec, Case.make("gemm", spec, **{FULL_GEMM_TILE!r})))
    rows = sweep.compile_cases(cases, (90,), progress=False)
    for record in sweep.to_records(rows):
        validate(record)

    # the attention tile before the fix: 32 keys at D=128
    native = variants(op="attn_decode", format="turbo3", backend="triton")[0]
    launch, = capture_launches(native, Case.make("attn_decode", "turbo3", **{HEAD_DIM_128!r}))
    launch.kwargs["BLOCK_N"] = 32
    old = sweep._compile(launch, 90)
    print(json.dumps({{"rows": [r.row() for r in rows], "records": len(sweep.to_records(rows)),
                      "old_tile": {{"status": old[3], "spill_bytes": old[1].spill_bytes if old[1] else None}}}}))
""")


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NUMBA_ENABLE_CUDASIM")}
    done = subprocess.run([sys.executable, "-c", CHILD], env={**env, "CUDA_VISIBLE_DEVICES": ""},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, output_tail(done)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(compiled, backend):
    return [r for r in compiled["rows"] if r["backend"] == backend]


def test_every_triton_kernel_compiles_for_sm_90_without_spills(compiled):
    rows = _rows(compiled, "triton")
    bad = [r for r in rows if r["status"] != "ok"]
    assert not bad, "\n".join(f"{r['op']} {r['format']} {r['variant']} {r['constants']}: {r['status']}" for r in bad)
    covered = {(r["op"], r["variant"]) for r in rows}
    registered = {(v.op, v.name) for v in variants(backend="triton")}
    assert registered <= covered, registered - covered
    for r in rows:
        assert 0 < r["registers"] <= 255 and r["spill_bytes"] == 0 and r["instructions"] > 0, r
        assert r["global_loads"] > 0 and r["global_stores"] > 0, r


def test_head_dim_128_attention_fits_in_registers(compiled):
    wide = [r for r in _rows(compiled, "triton") if r["op"] == "attn_decode" and "D=128" in r["constants"]]
    assert {r["format"] for r in wide} >= {"turbo3", "q8_0", "q4_0"}
    assert all(r["spill_bytes"] == 0 and r["local_accesses"] == 0 for r in wide), wide


def test_the_check_catches_the_spill_of_the_old_attention_tile(compiled):
    assert compiled["old_tile"]["status"] == "spills"
    assert compiled["old_tile"]["spill_bytes"] > 0


def test_numba_cuda_kernels_compile_to_ptx_where_nvvm_is_installed(compiled):
    rows = _rows(compiled, "cuda")
    assert rows, "no numba-cuda variant in the suite"
    unavailable = [r for r in rows if r["status"].startswith("unavailable")]
    if unavailable:
        assert len(unavailable) == len(rows), rows  # NVVM is there for all kernels or for none
        pytest.skip(unavailable[0]["status"])
    assert not [r for r in rows if r["status"] == "spills" or r["status"].startswith("failed")], rows
    assert any(r["status"] == "ok" and r["registers"] > 0 for r in rows)


def test_records_are_made_for_every_compiled_kernel(compiled):
    ok = [r for r in compiled["rows"] if r["status"] in ("ok", "spills")]
    assert compiled["records"] >= 4 * len(ok) > 0


def test_the_command_refuses_the_interpreter(monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(["compile", "--target", "sm_90", "--no-store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TRITON_INTERPRET=1" in err[0], err


def test_targets_are_parsed_or_refused_in_one_line():
    assert parse_targets("sm_80,sm_89,90") == [80, 89, 90]
    for bad in ("sm_9x", "sm_60", ","):
        with pytest.raises(UserError):
            parse_targets(bad)


def test_jobs_below_one_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["compile", "--target", "sm_90", "--op", "fwht", "--jobs", "0", "--no-store"]) == 2
    assert "--jobs 0: expected at least 1" in capsys.readouterr().err
