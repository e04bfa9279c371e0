"""Deprecated: the former home of the training loop, split by job. Its names, re-exported:

* :mod:`lstmjax.experiment.executor` -- ``run_trials`` (the loop over a search, the devices);
* :mod:`lstmjax.experiment.job` -- ``compile_job``, ``compile_trial``, ``run_trial``,
  ``seeds_in_one_program`` (one compiled program and its chunk loop);
* :mod:`lstmjax.experiment.trial_run` -- ``evaluate_lengths``, ``length_eval_program`` (one
  trial's files and its length evaluation);
* :mod:`lstmjax.experiment.resources` -- ``check_dtypes``, ``needs_x64`` (pre-flight);
* :mod:`lstmjax.experiment.search` -- ``share`` (a process's share of a grid).
"""

from __future__ import annotations

from lstmjax.experiment.executor import run_trials
from lstmjax.experiment.job import (
    CompiledTrial,
    compile_job,
    compile_trial,
    run_trial,
    seeds_in_one_program,
)
from lstmjax.experiment.resources import check_dtypes, needs_x64
from lstmjax.experiment.search import share
from lstmjax.experiment.trial_run import evaluate_lengths, length_eval_program

__all__ = [
    "run_trials", "run_trial", "compile_trial", "compile_job", "seeds_in_one_program",
    "check_dtypes", "needs_x64", "CompiledTrial", "evaluate_lengths", "length_eval_program",
    "share",
]  # fmt: skip
