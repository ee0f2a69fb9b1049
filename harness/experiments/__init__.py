"""Experiments as data: a TOML file per hypothesis (spec.py), run by a kind's runner on the same
inputs for every arm (kinds/), decided by a paired bootstrap (stats.py), stored as verdict records
(records.py) and summed up across reproductions as the landscape (landscape.py)."""
from .catalog import default_dir, find, resolve
from .engines import ENGINES, run_tasks
from .errors import ExperimentError
from .runner import Task, TaskResult, conclude, measure_task
from .spec import Experiment, load_experiment, parse_experiment

__all__ = ["ENGINES", "Experiment", "ExperimentError", "Task", "TaskResult", "catalog", "conclude", "default_dir",
           "find", "load_experiment", "measure_task", "parse_experiment", "resolve", "run_tasks"]
