"""Experiments: validated configs, sweeps over engine batches, and the results store.

``load_config`` -> ``expand_runs`` (stable run ids) -> ``run_sweep`` (trains in batches and
commits each batch to ``DIR/results.sqlite``) -> ``Store`` (read, export) and
``open_results`` (the runs as a table, one column per hyperparameter). Presets of the paper's
experiments live in ``presets``; the report in ``ntkdyn.report``.
"""

from ._backends import Backend, BatchError
from .config import Config, ExperimentConfig, OptimizerChoice, config_dict, load_config
from .estimate import SweepPlan, plan_sweep
from .merge import MergeResult, merge_stores
from .progress import Progress
from .records import KernelRecord, RunRecord
from .results import Results, open_results, read_results_csv
from .runs import DataCache, RunSpec, expand_runs, run_id
from .store import SCHEMA_VERSION, Store
from .sweep import SweepResult, plan_batches, run_sweep

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "BatchError",
    "MergeResult",
    "SweepPlan",
    "Config",
    "DataCache",
    "ExperimentConfig",
    "KernelRecord",
    "OptimizerChoice",
    "Progress",
    "Results",
    "RunRecord",
    "RunSpec",
    "Store",
    "SweepResult",
    "config_dict",
    "expand_runs",
    "load_config",
    "merge_stores",
    "open_results",
    "plan_sweep",
    "plan_batches",
    "read_results_csv",
    "run_id",
    "run_sweep",
]
