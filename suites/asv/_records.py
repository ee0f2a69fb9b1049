"""The records the harness stored for the commit asv is benchmarking.

`quantbench quality` and `quantbench throughput` append records to results/<commit12>[-dirty].jsonl;
the track_ benchmarks of quality.py and throughput.py read the latest value for the commit under
test and skip when there is none. The commit is $QUANTBENCH_COMMIT when set, else asv's
$ASV_COMMIT (set for environments asv builds), else the checkout's HEAD (the "existing"
environment, where asv records the results under --set-commit-hash HEAD).
"""
import functools
import os
from pathlib import Path

from asv_runner.benchmarks.mark import SkipNotImplemented

from quantbench.harness import env
from quantbench.harness.results import read_records
from quantbench.kernels import formats
from quantbench.kernels.formats import FormatError
from quantbench.kernels.storage import results_dir


def results_folder() -> Path:
    # asv runs benchmarks in a folder of its own; results/ sits beside asv.conf.json
    return results_dir(os.environ.get("ASV_CONF_DIR") or None)


def commit_under_test() -> str | None:
    return os.environ.get("QUANTBENCH_COMMIT") or os.environ.get("ASV_COMMIT") or env.commit()[0]


@functools.lru_cache(maxsize=1)
def commit_records() -> tuple:
    commit = commit_under_test()
    if not commit:
        return ()
    records = []
    for path in sorted(results_folder().glob(f"{commit[:12]}*.jsonl")):
        records.extend(read_records(path))
    return tuple(records)


def canonical(spec: str) -> str | None:
    try:
        return formats.get(spec).spec
    except FormatError:
        return None


def latest_value(op: str, metric: str, spec: str) -> float:
    """The newest value of (op, metric) for format `spec` at the commit under test."""
    want = canonical(spec)
    found = [r for r in commit_records() if r["op"] == op and r["metric"] == metric and canonical(r["format"]) == want]
    if not found:
        commit = (commit_under_test() or "uncommitted")[:12]
        raise SkipNotImplemented(f"no {op} {metric} record for {spec} at commit {commit} in {results_folder()}")
    return max(enumerate(found), key=lambda pair: (pair[1]["env"].get("time") or "", pair[0]))[1]["value"]


def format_params() -> list[str]:
    return formats.names()
