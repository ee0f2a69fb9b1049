"""Where tasks run. `local` (the default): one after another in this process, reusing the loaded
model and the on-disk reference cache. `ray`: one Ray task per (experiment, configuration), a GPU
resource asked for when the configuration's device is CUDA; the reference log-probabilities are
computed first, once per (model, corpus, ctx, chunks, start), by their own tasks that the experiment
tasks wait for, and the driver alone writes the results store."""
from __future__ import annotations

import os
import sys

from quantbench.harness.errors import UserError

from .runner import Task, TaskResult, measure_task

ENGINES = ("local", "ray")
QUALITY_KINDS = ("kv", "weights")
FORWARDED = ("QUANTBENCH_CACHE", "QUANTBENCH_RESULTS")


def run_tasks(tasks: list[Task], engine: str = "local", address: str | None = None,
              progress: bool = True) -> list[TaskResult]:
    if engine == "local":
        return [measure_task(task, progress) for task in tasks]
    if engine == "ray":
        return _run_on_ray(tasks, address, progress)
    raise UserError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")


def reference_key(task: Task) -> tuple | None:
    """The reference a quality task reads: (model, corpus, ctx, chunks, start, device); None for other kinds."""
    if task.experiment.kind not in QUALITY_KINDS:
        return None
    c = {"model": "", "corpus": "", "ctx": 512, "chunks": 8, "seed": 0, "device": "", **task.config}
    return c["model"], c["corpus"], c["ctx"], c["chunks"], c["seed"] * c["chunks"], c["device"]


def warm_reference(key: tuple) -> str:
    """Compute (or find) the cached reference log-probs of one key: an f16 quality run of its chunks."""
    _on_assigned_cpus()
    from quantbench.harness.commands.common import resolve_device
    from quantbench.harness.quality.corpus import load_corpus
    from quantbench.harness.quality.run import quality_table

    from .token_metrics import loaded_model

    model_path, corpus_path, ctx, chunks, start, device = key
    model = loaded_model(model_path, resolve_device(device or None))
    quality_table(model, ["f16"], load_corpus(corpus_path or None), ctx, chunks, start=start, progress=False)
    return "ready"


def _run_on_ray(tasks: list[Task], address: str | None, progress: bool) -> list[TaskResult]:
    try:
        import ray
    except ImportError:
        raise UserError("unavailable: ray is not installed (pip install 'quantbench[ray]')") from None
    if not ray.is_initialized():
        # the workers look for the reference cache where the driver keeps it
        forwarded = {name: os.environ[name] for name in FORWARDED if name in os.environ}
        ray.init(address=address, runtime_env={"env_vars": forwarded} if forwarded else None,
                 log_to_driver=progress, include_dashboard=False)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    remote_measure = ray.remote(_measure_quietly)
    remote_reference = ray.remote(warm_reference)
    references = {}
    futures = []
    for task in tasks:
        gpu = 1 if _wants_gpu(task, cluster_gpus) else 0
        key = reference_key(task)
        deps = []
        if key is not None:
            if key not in references:
                references[key] = remote_reference.options(num_gpus=gpu).remote(key)
            deps = [references[key]]
        futures.append(remote_measure.options(num_gpus=gpu).remote(task, *deps))
        if progress:
            print(f"experiment {task.experiment.id}: submitted to ray ({'1 GPU' if gpu else 'CPU'})", file=sys.stderr)
    return ray.get(futures)


def _measure_quietly(task: Task, *ready) -> TaskResult:
    _on_assigned_cpus()
    return measure_task(task, progress=False)


def _on_assigned_cpus() -> None:
    """Run torch and numba on the CPUs Ray gave this task (a Ray worker only). Ray sets
    OMP_NUM_THREADS for torch, but numba's OpenMP pool, started by the first parallel kernel, sets
    the OpenMP thread count they share to numba's (the machine's cores): a 1-CPU task then ran
    torch on 2 threads, against its share of the cluster, and its float reductions differed from a
    1-thread run's (q8_0 KLD at ctx 64 on the embedded model: 0.000456 against 0.000399)."""
    import ray

    from quantbench.harness.threads import set_threads

    if ray.is_initialized():
        set_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))


def _wants_gpu(task: Task, cluster_gpus: float) -> bool:
    """CUDA asked for, or the default device ("": CUDA where there is one) on a cluster with GPUs."""
    device = str(task.config.get("device", ""))
    if task.experiment.requires.get("device") == "cuda" or device.startswith("cuda"):
        return True
    return device == "" and cluster_gpus > 0 and task.experiment.kind != "format"
