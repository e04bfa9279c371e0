"""Every name in a run directory, the states a trial can be found in, and the errors of the
run directory (:mod:`lstmjax.experiment.rundir` describes the layout)."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path

from lstmjax.experiment.errors import ConfigError

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "DIAGNOSTICS_FILE", "SUMMARY_FILE", "CHECKPOINT_DIR",
    "CHECKSUM_FILE", "RESULTS_FILE", "REPORT_FILE", "PLOTS_DIR", "LOCK_FILE", "WANDB_DIR",
    "TENSORBOARD_DIR", "FRONTIER_FILE", "STUDY_FILE", "PROCESS_MARKER", "FAILED_FILE",
    "RUN_FILES", "TRIAL_FILES", "TrialState", "RunError", "DamagedFile", "warn", "run_dir_for",
]  # fmt: skip

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CHECKSUM_FILE = "checksums.json"
DIAGNOSTICS_FILE = "diagnostics.jsonl"
RESULTS_FILE = "results.csv"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
LOCK_FILE = ".lstmjax.lock"
FAILED_FILE = "failed.json"  # a trial whose training raised: the error, until it is retried
WANDB_DIR = "wandb"  # the wandb logger's offline runs (lstmjax.experiment.loggers)
TENSORBOARD_DIR = "tensorboard"  # the TensorBoard logger's event files, <trial>/seed-<s>/
FRONTIER_FILE = "frontier.csv"  # a gap frontier's answer per variant (the report)
STUDY_FILE = "optuna.db"  # the study of a `sweep.method: optuna` search
PROCESS_MARKER = ".lstmjax-process-{}.json"  # process I of several is done (hosts)
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, REPORT_FILE)  # atomically written at the top level
TRIAL_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKSUM_FILE, DIAGNOSTICS_FILE,
               FAILED_FILE)


class TrialState(str, enum.Enum):
    """Where a trial's directory stands before a run trains it (equal to its string value, as
    the plans were before they were an enum)."""

    NEW = "new"            # no directory: trained from the start
    RESTART = "restart"    # a directory without (or with a damaged) config: from the start
    RESUME = "resume"      # unfinished: continues from its newest valid checkpoint
    FINISHED = "finished"  # a valid summary: read back, not trained
    EXTEND = "extend"      # made with fewer train.steps: continues to the raised budget

    def __str__(self) -> str:
        return self.value


class RunError(ConfigError):
    """A problem with the run directory (exists, or differs from the config being resumed)."""


class DamagedFile(RunError):
    """A file of the run directory that cannot be read as what it should hold."""


def warn(message: str) -> None:
    """A one-line warning on stderr (shown whatever the progress display)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run_dir_for(cfg, out_dir: str | os.PathLike | None = None) -> Path:
    """``out_dir`` if given, else ``<output.dir>/<name>`` (a leading ``~`` is the home)."""
    if out_dir is not None:
        return Path(os.path.expanduser(os.fspath(out_dir)))
    return Path(os.path.expanduser(cfg.output.dir)) / cfg.name
