"""Packaging metadata is in pyproject.toml. This file only maps the folders at the repository root
(kernels/, harness/, suites/) into the `quantbench` namespace, with every subpackage found by
walking them: a new package needs no edit here. (A bare top-level `kernels` would clash with the
PyPI package of that name, which transformers probes for.)"""
from setuptools import find_packages, setup

ROOTS = ("kernels", "harness", "suites")

setup(
    packages=[f"quantbench.{root}{'.' + sub if sub else ''}" for root in ROOTS for sub in ["", *find_packages(root)]],
    package_dir={f"quantbench.{root}": root for root in ROOTS},
    package_data={"quantbench.suites": ["experiments/*.toml"],
                  "quantbench.kernels.formats": ["codebooks/*.json", "trellis_tables/*.json"]},
)
