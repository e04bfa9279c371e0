"""``lj.experiment.run``: train an experiment (:mod:`.runner`), then, if asked, write its report
(:mod:`.report`). The one place where the two meet, so neither imports the other."""

from __future__ import annotations

import os

from lstmjax.experiment.progress import Reporter
from lstmjax.experiment.report import write_report
from lstmjax.experiment.runner import run_trials
from lstmjax.experiment.schema import ExperimentConfig

__all__ = ["run"]


def run(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: str | Reporter | None = None,
    report: bool = True,
    force_unlock: bool = False,
) -> dict:
    """Train every trial of ``cfg`` into its run directory and return the run summary
    ``{"name", "run_dir", "wall_time_s", "trials": [per-trial summary dicts]}``.

    ``report`` (default True, as ``lstmjax run``): afterwards write ``results.csv``,
    ``report.md`` and the plots, and add ``"report"`` (see :func:`write_report`) to the result;
    pass False to train only. Resuming, locking and progress: :func:`.runner.run_trials`.
    """
    result = run_trials(cfg, out_dir, resume=resume, progress=progress,
                        force_unlock=force_unlock)
    if report:
        result["report"] = write_report(result["run_dir"], plots=cfg.output.plots)
    return result
