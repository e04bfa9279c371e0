"""Experiments: YAML config -> sweep of trials -> trained seeds -> results directory -> report.

    cfg = lj.experiment.load_config("configs/quickstart.yaml", overrides=["train.steps=200"])
    print(lj.experiment.format_dry_run(lj.experiment.dry_run(cfg)))  # what it would train
    summary = lj.experiment.run(cfg, out_dir="runs/quickstart")    # trains, then reports
    lj.experiment.write_report("runs/quickstart")                   # rebuild the report
    df = lj.experiment.load_results("runs/quickstart")              # pandas, one row per seed

Modules, in the order data flows: ``schema`` (the config models), ``config`` (YAML, ``--set``
overrides, one-pass validation), ``errors`` (one-line messages), ``space`` (a sweep's method and
distributions: grid, random, optuna), ``sweep`` (the trials of a sweep, expanded once per
command), ``search`` (what to train: the ``Search`` protocol -- grid, gap frontier, optuna
study -- and ``replay``, the trials a run directory holds), ``frontier`` (the gap search's
pure planning), ``resources`` (pre-flight: memory, dtypes), ``dryrun`` (what a run would do,
nothing written), ``schedule`` (jobs and device
placements), ``hosts`` (several processes), ``executor`` (the loop: ask, train, tell),
``job`` (one compiled program), ``trial_run`` (one trial's files while it trains),
``summary`` (the per-trial record), ``rundir`` (the directory's layout, files, lock and
checkpoints), ``diagnose`` (gradient flow and gates), ``progress``, ``loggers`` (TensorBoard,
W&B), ``report`` (tables and plots), ``api`` (``run``: executor then report), ``results``
(DataFrames). ``runner`` is a deprecated alias of executor, job and trial_run.
"""

from lstmjax.experiment import report  # the module; calling it is a deprecated alias
from lstmjax.experiment.api import run
from lstmjax.experiment.config import ConfigError, ExperimentConfig, from_dict, load_config
from lstmjax.experiment.dryrun import DryRun, dry_run, format_dry_run
from lstmjax.experiment.report import write_report
from lstmjax.experiment.results import load_diagnostics, load_metrics, load_results
from lstmjax.experiment.rundir import RunError, load_run_config, read_metrics
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import Trial, expand

__all__ = [
    "ConfigError",
    "DryRun",
    "ExperimentConfig",
    "RunError",
    "SeedResult",
    "Trial",
    "TrialSummary",
    "dry_run",
    "expand",
    "format_dry_run",
    "from_dict",
    "load_config",
    "load_diagnostics",
    "load_metrics",
    "load_results",
    "load_run_config",
    "read_metrics",
    "report",
    "run",
    "write_report",
]
