"""Plugins: an installed package's `quantbench.plugins` entry point names a module that registers
formats and variants with the built-in decorators; they then show in `quantbench list` and in the
asv and pytest-benchmark case lists. The package is installed for real, as a dist-info folder on
the child process's path (importlib.metadata reads its entry points), not mocked."""
import json
import os
import subprocess
import sys
import textwrap

PLUGIN = textwrap.dedent('''
    import torch

    from quantbench.harness.registry import variant
    from quantbench.kernels.formats import register
    from quantbench.kernels.formats.floats import F32


    @register
    class Plugged(F32):
        name = "plugged_f32"


    @variant("fwht", backend="plugin", name="copy_then_fwht")
    def fwht_plugin(case):
        """a researcher's own FWHT"""
        from quantbench.kernels.formats.rotation import fwht

        x = case.inputs()["x"]
        return lambda: fwht(x.clone())
''')

CHECK = textwrap.dedent('''
    import json
    from quantbench.harness.suite_cases import suite_cases
    from quantbench.suites.asv import kernels

    print(json.dumps({
        "suite": sorted({f"{c.variant.backend}/{c.variant.name}" for c in suite_cases(["fwht"])}),
        "asv": kernels.TimeFwht.params[0],
    }))
''')


def install_plugin(tmp_path, module_source: str):
    (tmp_path / "qb_test_plugin.py").write_text(module_source)
    dist = tmp_path / "qb_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qb-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[quantbench.plugins]\nmy_kernels = qb_test_plugin\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def run(env, *args):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_plugin_variant_and_format_appear_in_list_and_in_both_suites(tmp_path):
    env = install_plugin(tmp_path, PLUGIN)
    listed = run(env, "-m", "quantbench.harness.cli", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert '"format": "plugged_f32"' in listed.stdout
    assert '"backend": "plugin"' in listed.stdout and '"variant": "copy_then_fwht"' in listed.stdout
    cases = run(env, "-c", CHECK)
    assert cases.returncode == 0, cases.stderr[-3000:]
    lists = json.loads(cases.stdout.strip().splitlines()[-1])
    assert "plugin/copy_then_fwht" in lists["suite"] and "plugin/copy_then_fwht" in lists["asv"]
    benched = run(env, "-m", "quantbench.harness.cli", "bench", "--op", "fwht", "--backend", "plugin",
                  "--shape", "rows=16,dim=64", "--budget", "0.01", "--no-store", "-o", "json")
    assert benched.returncode == 0, benched.stderr[-3000:]
    (row,) = json.loads(benched.stdout)
    assert row["status"] == "ok", row


def test_a_broken_plugin_is_one_clear_error(tmp_path):
    env = install_plugin(tmp_path, "raise RuntimeError('plugin exploded')\n")
    done = run(env, "-m", "quantbench.harness.cli", "list")
    assert done.returncode == 2
    assert "plugin 'my_kernels' (module qb_test_plugin" in done.stderr and "plugin exploded" in done.stderr
    assert "Traceback" not in done.stderr
