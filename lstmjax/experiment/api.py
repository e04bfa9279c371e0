"""``lj.experiment.run``: train an experiment (:mod:`.executor`), then, if asked, write its report
(:mod:`.report`). The one place where the two meet, so neither imports the other."""

from __future__ import annotations

import os

from lstmjax.experiment.compile_cache import CompileMeter, enable
from lstmjax.experiment.effective import option_notes
from lstmjax.experiment.executor import run_trials
from lstmjax.experiment.progress import Reporter
from lstmjax.experiment.report import write_report
from lstmjax.experiment.rundir import RunError, warn
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.sweep import expand

__all__ = ["run", "TrialsFailed"]


def run(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: str | Reporter | None = None,
    report: bool = True,
    force_unlock: bool = False,
    devices: int | None = None,
    raise_failures: bool = True,
    compile_cache: str | os.PathLike | None = None,
    trials=None,
    train_job=None,
) -> dict:
    """Train every trial of ``cfg`` into its run directory and return the run summary
    ``{"name", "run_dir", "wall_time_s", "train_s", "devices", "process", "processes", "trials":
    [per-trial summary dicts], "failed": [{"trial", "error"}], "compile"}`` (with
    ``"report"`` once written, ``"frontier"`` for a gap frontier, ``"best"`` for an optuna
    study).

    ``report`` (default True, as ``lstmjax run``): afterwards write ``results.csv``,
    ``report.md`` and the plots, and add ``"report"`` (see :func:`write_report`) to the result;
    pass False to train only. Resuming, locking, progress and ``devices`` (trials trained
    concurrently, one per device): :func:`.executor.run_trials`; so are ``trials`` (the
    expanded sweep, when the caller has it: then it is not expanded again) and ``train_job``
    (what trains a job; tests pass a fake). Trials that fail do not stop the
    others; once the rest (and the report) are written, :class:`TrialsFailed` names them
    (``raise_failures=False``: they are only listed in ``result["failed"]``).

    ``compile_cache``: JAX's persistent compilation cache, ``"auto"`` (default: the user cache
    directory, or the JAX cache already configured), ``"off"`` or a directory; None reads
    ``LSTMJAX_COMPILE_CACHE`` (:mod:`.compile_cache`). ``result["compile"]`` counts the programs
    XLA compiled for the training (persistent-cache hits excluded) and the seconds spent in
    compile requests, summed over the devices' threads, and names the cache directory.
    """
    trials = expand(cfg) if trials is None else trials  # once, for the training and the report
    for note in option_notes(cfg.model.options, trials):  # never silent (effective.py)
        warn(note)
    cache_dir = enable(compile_cache)
    with CompileMeter() as meter:
        result = run_trials(cfg, out_dir, resume=resume, progress=progress,
                            force_unlock=force_unlock, devices=devices, trials=trials,
                            train_job=train_job)
    result["compile"] = {"programs": meter.compiles, "seconds": meter.seconds,
                         "cache": None if cache_dir is None else str(cache_dir)}
    if report and result["process"] == 0:  # with several processes, process 0 reports
        result["report"] = write_report(result["run_dir"], plots=cfg.output.plots, cfg=cfg,
                                        trials=trials)
    if result["failed"] and raise_failures:
        names = ", ".join(f"{f['trial']} ({f['error']})" for f in result["failed"][:3])
        raise TrialsFailed(
            f"{len(result['failed'])} trial(s) failed: {names}; the others finished and the "
            "report is written; retry them with resume=True", result)
    return result


class TrialsFailed(RunError):
    """Some trials raised while training; ``.result`` is the run summary of the rest."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result
