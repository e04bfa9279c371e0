"""Train an experiment into its run directory: one loop over a search.

    ask the search -> plan the asked trials -> check they fit -> submit their jobs to the
    devices -> tell the search each result, once (None: the trial failed)

:func:`run_trials` makes every check before anything is written, takes the directory's lock
and runs the loop (:class:`Executor`); the search (:mod:`lstmjax.experiment.search`) decides
what to train, a job (:mod:`lstmjax.experiment.job`) is one compiled program, and a trial's
files while it trains are :mod:`lstmjax.experiment.trial_run`. The layout of the directory is
:mod:`lstmjax.experiment.rundir`; the report is :mod:`lstmjax.experiment.report` (never
written here). The executor never asks which search it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lstmjax.experiment import hosts, job, loggers, search
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.errors import ConfigError, one_line
from lstmjax.experiment.job import JobContext, Slot
from lstmjax.experiment.progress import Reporter, make_reporter
from lstmjax.experiment.resources import check_dtypes, check_fits
from lstmjax.experiment.rundir import (
    RunError,
    RunLock,
    TrialState,
    plan_run,
    plan_trials,
    prepare,
    run_dir_for,
    warn,
    write_failure,
)
from lstmjax.experiment.schedule import (
    DEFAULT_PLACEMENT,
    Job,
    Placement,
    data_parallel_placement,
    make_jobs,
    placements,
    select_devices,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial, expand
from lstmjax.experiment.trial_run import read_back

__all__ = ["run_trials", "Executor", "DevicePool", "TrainJob"]

# The seam that trains a job: train_job(job, ctx, slot) -> one summary per trial of the job.
# An optional attribute ``prepare(job, ctx, placement)`` compiles a job ahead (one device: the
# next job compiles while the current one trains). Default: lstmjax.experiment.job.train_job.
TrainJob = Callable[[Job, JobContext, Slot], "list[TrialSummary]"]


def run_trials(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: str | Reporter | None = None,
    force_unlock: bool = False,
    devices: int | None = None,
    trials: list[Trial] | None = None,
    train_job: TrainJob | None = None,
) -> dict:
    """Train every trial of ``cfg`` into its run directory; returns a run summary
    ``{"name", "run_dir", "wall_time_s", "train_s", "devices", "trials": [summary.json dicts],
    "failed": [{"trial", "error"}]}`` (``frontier`` too for a frontier config, ``best`` for
    an optuna study).

    ``devices`` (default ``cfg.output.devices``, else every local device): with several,
    trials train concurrently, one per device (:mod:`lstmjax.experiment.schedule`); results do
    not depend on the schedule. A trial that raises fails alone: it is listed in ``failed``
    (and its ``failed.json``), the others finish, ``--resume`` retries it.

    Without ``resume`` the directory must not exist yet (or be empty). With ``resume``,
    finished trials are skipped and unfinished ones continue from their last valid checkpoint;
    the config must match the one stored in the directory and in each trial. Every check
    (:func:`~lstmjax.experiment.rundir.plan_run`, dtypes, memory) runs before anything is
    written, and the directory is locked while the run writes to it (``force_unlock`` takes
    over the lock of a process on another host; never a live one's on this host).
    ``progress``: ``auto``/``rich``/``plain``/``none`` or a :class:`Reporter` (default:
    ``cfg.output.progress``). ``trials``: ``expand(cfg)`` if the
    caller has it (the sweep is expanded once per command). ``train_job``: what trains a job
    (default :func:`lstmjax.experiment.job.train_job`; tests pass a fake).
    """
    run_dir = run_dir_for(cfg, out_dir)
    trials = expand(cfg) if trials is None else trials
    rank, nproc = hosts.rank_and_count()
    shown: list[Reporter] = []  # the progress display, once it exists
    found = search.for_config(cfg, run_dir, trials=trials, resume=resume, rank=rank,
                              count=nproc, note=lambda text: shown and shown[0].note(text))
    check_dtypes(found.upfront)
    loggers.check_loggers(cfg)
    check_fits(found.upfront)
    if rank == 0:
        RunLock(run_dir, force=force_unlock).check()
    chosen = select_devices(devices if devices is not None else cfg.output.devices)
    data_parallel_placement(list(found.upfront), chosen)  # checked before anything is written
    plan = plan_run(run_dir, cfg, found.upfront if found.fixed else [], resume)
    hosts.meet("planned")  # every process checked the directory before any writes to it
    reporter = progress if isinstance(progress, Reporter) else make_reporter(
        progress or cfg.output.progress)
    shown.append(reporter)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot create the run directory ({e.strerror or e})") from None
    t0 = time.monotonic()
    result: dict[str, Any] = {"name": cfg.name, "run_dir": str(run_dir),
                              "devices": [f"{d.platform}:{d.id}" for d in chosen],
                              "process": rank, "processes": nproc}
    with (RunLock(run_dir, force=force_unlock) if rank == 0 else contextlib.nullcontext()
          ) as lock, hosts.running(lock):  # a lost process (hosts.join's watch) frees it too
        if rank == 0:
            prepare(run_dir, to_dict(cfg))
        hosts.clear_markers(run_dir, rank)
        hosts.meet("prepared")
        sinks = loggers.open_run(cfg, run_dir)
        try:
            ctx = JobContext(run_dir, reporter, sinks, found.size, dict(plan),
                             watch=getattr(found, "watch", None))
            executor = Executor(found, ctx, chosen if len(chosen) > 1 else None,
                                resume=resume, train_job=train_job)
            failures = executor.run()
            outcome = found.result()
            summaries = list(outcome.summaries)
            result.update(outcome.extra)
        finally:
            reporter.close()
            sinks.close()
        if nproc > 1:
            whole, failures = _gather(cfg, run_dir, trials, failures, result)
            summaries = summaries if whole is None else whole
    result["wall_time_s"] = time.monotonic() - t0
    result["train_s"] = reporter.training_s  # wall time with a trial training
    result["trials"] = [s.to_json() for s in summaries]
    result["failed"] = failures
    return result


def _gather(cfg, run_dir: Path, trials, failures: list, result: dict):
    """Several processes: each marks itself done; process 0 waits for all and returns the
    whole run's summaries (replayed from the shared directory) and failures; the others
    return (None, their failures)."""
    rank, nproc = hosts.rank_and_count()
    if rank != 0:
        hosts.write_done(run_dir, rank, failures)
        hosts.wait_collected(run_dir, rank)  # still watched (and watching) until gathered
        hosts.stop_watching()
        return None, failures
    failures = failures + hosts.wait_for_all(run_dir, nproc)
    hosts.stop_watching()
    whole = search.replay(cfg, run_dir, trials)
    result.update(whole.extra)
    return whole.summaries, failures


@dataclasses.dataclass
class _Batch:
    """The trials of one ask, for the progress display's sweep line."""

    size: int
    t0: float = dataclasses.field(default_factory=time.monotonic)
    done: int = 0


class Executor:
    """The loop: ask ``search`` -> plan the asked trials -> check they fit -> submit their
    jobs -> tell each result once. ``devices``: several devices (None: one, or the default
    device); then jobs run concurrently, one per device (:class:`DevicePool`). On one device
    (or with ``train.data_parallel``, every job on all devices) the jobs of an ask run one
    after another, the next one compiling in a thread while the current one trains (XLA
    releases the GIL while compiling). A job that raises fails only its trials (see
    :meth:`guarded`); ``run()`` returns those failures."""

    def __init__(self, search: search.Search, ctx: JobContext, devices: list | None = None, *,
                 resume: bool = False, train_job: TrainJob | None = None):
        self.search, self.ctx, self.devices, self.resume = search, ctx, devices, resume
        self.train_job = train_job or job.train_job
        self.failures: list[dict] = []
        self._budgets: dict[str, int] = {}  # trial name -> train.steps it was asked with
        self.data_parallel = data_parallel_placement(list(search.upfront), devices or [])

    def run(self) -> list[dict]:
        one_at_a_time = (self.devices is None or len(self.devices) <= 1
                         or self.data_parallel is not None)
        self.search.width = 1 if one_at_a_time else len(self.devices)  # trials trained at once
        with contextlib.nullcontext() if one_at_a_time else DevicePool(
                self.devices, self.guarded) as pool:
            while True:
                asked = self.search.ask()
                if asked:
                    self._start(asked, pool)
                elif pool is not None and pool.pending:
                    self._finish(*pool.next())
                else:
                    return self.failures

    def _start(self, asked: list[Trial], pool: DevicePool | None) -> None:
        """Plan the asked trials, check they fit, read back the finished ones and train or
        submit the rest."""
        states = self.ctx.states
        new = [t for t in asked if t.name not in states]
        states.update(plan_trials(self.ctx.run_dir, new) if self.resume
                      else dict.fromkeys((t.name for t in new), TrialState.NEW))
        # asked again with a larger budget (a search extending a trial still learning): its
        # directory continues from its checkpoint
        again = [t for t in asked if t.name in self._budgets
                 and self._budgets[t.name] != t.cfg.train.steps]
        states.update(plan_trials(self.ctx.run_dir, again))
        self._budgets.update((t.name, t.cfg.train.steps) for t in asked)
        check_fits(new)  # (the trials planned before the run were checked with it)
        batch = _Batch(len(asked))
        if pool is not None and self.search.streams:  # each alone, on one device
            jobs = [Job((t,)) for t in asked if states[t.name] is not TrialState.FINISHED]
        else:
            jobs = make_jobs(asked, states)
        training = {t.name for j in jobs for t in j.trials}
        for t in asked:
            if t.name not in training:
                summary = read_back(t, self.ctx.dir_of(t), self.ctx.reporter, self.ctx.count)
                if summary is None:  # damaged after all: trained again
                    jobs.append(Job((t,)))
                    continue
                batch.done += 1
                self.search.tell(t, summary)
        if pool is None:
            self._in_turn(jobs, batch)
            return
        where = ([None] * len(jobs) if self.search.streams or len(jobs) >= len(self.devices)
                 else placements(jobs, self.devices))
        for j, placement in zip(jobs, where, strict=True):
            pool.submit(j, placement, batch)

    def _in_turn(self, jobs: list[Job], batch: _Batch) -> None:
        placement = self.data_parallel or DEFAULT_PLACEMENT
        prepare = getattr(self.train_job, "prepare", None)
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmjax-compile")
        submit = lambda j: (ahead.submit(prepare, j, self.ctx, placement)  # noqa: E731
                            if prepare is not None else None)
        try:
            future = submit(jobs[0]) if jobs else None
            for i, j in enumerate(jobs):
                try:
                    compiled = future.result() if future is not None else None
                except Exception:  # noqa: BLE001 -- compiled (and reported) again in guarded
                    compiled = None
                future = submit(jobs[i + 1]) if i + 1 < len(jobs) else None
                self._finish(j, self.guarded(j, Slot(placement, compiled)), batch)
        finally:
            ahead.shutdown(wait=False, cancel_futures=True)

    def guarded(self, j: Job, slot: Slot) -> dict[str, TrialSummary]:
        """Train one job; a failure (an exception other than a run-directory or config
        problem, or an interrupt) fails only its trials: written to their ``failed.json``,
        named in a warning and in the failures, and retried by ``--resume``."""
        try:
            summaries = self.train_job(j, self.ctx, slot)
        except (ConfigError, OSError):
            raise
        except Exception as e:  # noqa: BLE001 -- whatever a trial raises fails that trial only
            message = one_line(f"{type(e).__name__}: {e}")[:300]
            for t in j.trials:
                write_failure(self.ctx.dir_of(t), message)
                self.failures.append({"trial": t.name, "error": message})
            warn(f"trial {j.name} failed ({message}); the other trials continue, "
                 "`--resume` retries it")
            return {}
        return {t.name: s for t, s in zip(j.trials, summaries, strict=True)}

    def _finish(self, j: Job, results: dict[str, TrialSummary], batch: _Batch) -> None:
        """Tell the search each trial's result (None: failed), then show the sweep's progress."""
        for t in j.trials:
            summary = results.get(t.name)
            batch.done += summary is not None
            self.search.tell(t, summary)
        self.ctx.reporter.sweep(batch.done + len(self.failures),
                                self.search.size and batch.size, time.monotonic() - batch.t0)


class DevicePool:
    """Worker threads, one per device: each runs whole jobs on its device (or, for a job
    submitted with a placement, on that placement's devices) through ``run(job, slot)``.
    ``next()`` returns ``(job, {trial name: summary}, tag)`` as jobs finish; an interrupt
    raised in a worker is re-raised here, and leaving the ``with`` block stops and joins the
    workers."""

    def __init__(self, devices: list, run: Callable[[Job, Slot], dict]):
        self.devices, self.run = list(devices), run
        self.stop = threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.pending = 0
        self.threads: list = []
        self._free: queue.Queue = queue.Queue()
        for d in self.devices:
            self._free.put(d)

    def __enter__(self) -> DevicePool:
        return self

    def submit(self, j: Job, placement: Placement | None = None, tag: Any = None) -> None:
        self.pending += 1
        thread = threading.Thread(target=self._work, args=(j, placement, tag), daemon=True,
                                  name=f"lstmjax-{len(self.threads)}")
        self.threads.append(thread)
        thread.start()

    def _work(self, j: Job, placement: Placement | None, tag: Any) -> None:
        device = None
        try:
            if placement is None or not placement.devices:
                device = self._free.get()  # wait for a device to come free
                placement = Placement((device,))
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.results.put((j, self.run(j, Slot(placement, None, self.stop)), tag, None))
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            self.results.put((j, {}, tag, e))
        finally:
            if device is not None:
                self._free.put(device)

    def next(self) -> tuple[Job, dict, Any]:
        j, summaries, tag, error = self.results.get()
        self.pending -= 1
        if error is not None:
            raise error
        return j, summaries, tag

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
