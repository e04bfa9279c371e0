"""Train the trials of an experiment into a run directory (seeds vmapped), resuming interrupted
runs. The layout of the directory and its files is :mod:`lstmjax.experiment.rundir`; the report
is :mod:`lstmjax.experiment.report` (this module never writes it).

Crash safety: every file is replaced atomically (lstmjax._io) and orbax commits a checkpoint by
renaming its directory. After each chunk boundary that is due for a checkpoint the runner first
rewrites ``metrics.jsonl`` and then saves the checkpoint, so the metrics always reach at least
the checkpoint's step; ``--resume`` restores the newest checkpoint and drops metric lines past
it. Randomness depends only on (seed, step), so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from lstmjax._io import atomic_write_text, remove_stale_temporaries
from lstmjax.experiment import frontier, hosts, loggers, search
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.diagnose import Diagnoser, read_diagnostics, write_diagnostics
from lstmjax.experiment.errors import one_line
from lstmjax.experiment.progress import Reporter, make_reporter, position_label
from lstmjax.experiment.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    TRIAL_FILES,
    Checkpointer,
    DamagedFile,
    RunError,
    RunLock,
    check_same_config,
    clear_failure,
    plan_run,
    plan_trials,
    prepare,
    read_finished,
    read_metrics,
    read_yaml,
    run_dir_for,
    warn,
    write_config,
    write_failure,
    write_metrics,
    write_summary,
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
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import Trial, expand

__all__ = [
    "run_trials", "run_trial", "compile_trial", "compile_job", "seeds_in_one_program",
    "check_dtypes", "needs_x64",
]  # fmt: skip


def run_trials(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: str | Reporter | None = None,
    force_unlock: bool = False,
    devices: int | None = None,
) -> dict:
    """Train every trial of ``cfg`` into its run directory; returns a run summary
    ``{"name", "run_dir", "wall_time_s", "devices", "trials": [summary.json dicts],
    "failed": [{"trial", "error"}]}`` (``frontier`` too for a frontier config).

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
    ``cfg.output.progress``).
    """
    from lstmjax.experiment.resources import check_fits

    run_dir = run_dir_for(cfg, out_dir)
    trials = expand(cfg)  # with a frontier: the variants (the gap is searched)
    check_dtypes(trials)
    loggers.check_loggers(cfg)
    check_fits(trials if cfg.frontier is None else
               [frontier.probe(cfg, v, cfg.frontier.start, 0) for v in trials])
    rank, nproc = hosts.rank_and_count()
    if nproc > 1 and cfg.search.method == "optuna":
        raise RunError("sweep.method: an optuna study runs in one process (it proposes one "
                       "trial at a time); run it without --num-processes")
    if rank == 0:
        RunLock(run_dir, force=force_unlock).check()
    chosen = select_devices(devices if devices is not None else cfg.output.devices)
    data_parallel_placement(trials, chosen)  # batch sizes checked before anything is written
    searched = cfg.frontier is not None or cfg.search.method == "optuna"  # trials found as it goes
    plan = plan_run(run_dir, cfg, [] if searched else trials, resume)
    if cfg.search.method == "optuna" and resume:
        search.check_study(run_dir, cfg)  # another study's optuna.db: refused, nothing written
    hosts.meet("planned")  # every process checked the directory before any writes to it
    if not isinstance(progress, Reporter):
        progress = make_reporter(progress or cfg.output.progress)
    reporter = progress
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot create the run directory ({e.strerror or e})") from None
    t0 = time.monotonic()
    result: dict[str, Any] = {"name": cfg.name, "run_dir": str(run_dir),
                              "devices": [f"{d.platform}:{d.id}" for d in chosen],
                              "process": rank, "processes": nproc}
    failures: list[dict] = []
    several = chosen if len(chosen) > 1 else None
    with (RunLock(run_dir, force=force_unlock) if rank == 0 else contextlib.nullcontext()
          ) as lock, hosts.running(lock):  # a lost process (hosts.join's watch) frees it too
        if rank == 0:
            prepare(run_dir, to_dict(cfg))
        hosts.clear_markers(run_dir, rank)
        hosts.meet("prepared")
        sinks = loggers.open_run(cfg, run_dir)
        try:
            if cfg.search.method == "optuna":  # lstmjax.experiment.search; None: it failed
                inits: dict = {}  # compiled initialisers, shared by the trials of the search

                def one(trial, state):
                    out = _train([trial], {trial.name: state}, run_dir, reporter,
                                 cfg.search.num_trials, sinks, several, failures, inits)
                    return out[0] if out else None
                summaries, result["best"] = search.run_optuna(cfg, run_dir, one, reporter.message)
            elif cfg.frontier is None:
                summaries = _train(share(trials, plan, rank, nproc), plan, run_dir, reporter,
                                   len(trials), sinks, several, failures)
            else:
                mine = trials[rank::nproc]
                summaries, found = _search_frontier(cfg, mine, run_dir, reporter, resume, sinks,
                                                    several, failures)
                result["frontier"] = frontier.rows(mine, found)
        finally:
            reporter.close()
            sinks.close()
        if nproc > 1:
            summaries, failures = _gather(cfg, trials, run_dir, rank, nproc, summaries,
                                          failures, result)
    result["wall_time_s"] = time.monotonic() - t0
    result["trials"] = [s.to_json() for s in summaries]
    result["failed"] = failures
    return result


def share(trials: list[Trial], plan: dict[str, str], rank: int, count: int) -> list[Trial]:
    """Process ``rank``'s share of ``trials``: every ``count``-th job (so a learning-rate
    group stays in one process), finished trials included (they are read back)."""
    if count == 1:
        return trials
    mine = {t.name for i, job in enumerate(make_jobs(trials, {})) if i % count == rank
            for t in job.trials}
    return [t for t in trials if t.name in mine]


def _gather(cfg, trials, run_dir: Path, rank: int, nproc: int, summaries, failures, result):
    """Several processes: each marks itself done; process 0 waits for all and returns the
    whole run's summaries (read from the shared directory) and failures."""
    if rank != 0:
        hosts.write_done(run_dir, rank, failures)
        hosts.wait_collected(run_dir, rank)  # still watched (and watching) until gathered
        hosts.stop_watching()
        return summaries, failures
    failures = failures + hosts.wait_for_all(run_dir, nproc)
    hosts.stop_watching()
    if cfg.frontier is None:
        found = [read_finished(run_dir / t.name) for t in trials]
        return [s for s in found if s is not None], failures
    probes, results = frontier.collect(run_dir, cfg, trials)
    result["frontier"] = frontier.rows(trials, results)
    return [s for _, s, _ in probes if s is not None], failures


def _train(trials: list[Trial], plan: dict[str, str], run_dir: Path, reporter: Reporter,
           count: int, sinks: loggers.Loggers | None = None, devices: list | None = None,
           failures: list | None = None, cache: dict | None = None) -> list[TrialSummary]:
    """Train ``trials`` (finished ones are read back), grouped into jobs
    (:func:`~lstmjax.experiment.schedule.make_jobs`); returns the summaries in trial order,
    without those of trials that failed (appended to ``failures``). One device: the jobs one
    after another, the next one compiling in a thread while the current one trains (XLA
    releases the GIL while compiling). Several: one job per device at a time, concurrently,
    or, with fewer jobs than devices, each job's seeds sharded over its share. With
    ``train.data_parallel`` (and several devices): the jobs one after another, each on all the
    devices with its batches sharded over them. ``cache``: compiled initialisers shared with
    the caller's other calls (a frontier's rounds, a search's trials)."""
    failures = [] if failures is None else failures
    cache = {} if cache is None else cache
    done: dict[str, TrialSummary] = {}
    for t in trials:
        if plan[t.name] == "finished":
            done.update(_guarded(Job((t,)), run_dir, plan, reporter, count, sinks, failures))
    jobs = make_jobs(trials, plan)
    t0, total = time.monotonic(), len(trials)

    def finished(results: dict) -> None:
        done.update(results)
        reporter.sweep(len(done) + len(failures), count and total, time.monotonic() - t0)

    data_parallel = data_parallel_placement(trials, devices or [])
    if devices is None or len(devices) <= 1 or data_parallel is not None:
        _train_sequentially(jobs, run_dir, plan, reporter, count, sinks, failures, finished,
                            data_parallel or DEFAULT_PLACEMENT, cache)
    elif len(jobs) < len(devices):
        with _Pool(devices, run_dir, plan, reporter, count, sinks, failures, cache) as pool:
            for job, where in zip(jobs, placements(jobs, devices), strict=True):
                pool.submit(job, where)
            while pool.pending:
                finished(pool.next()[1])
    else:
        with _Pool(devices, run_dir, plan, reporter, count, sinks, failures, cache) as pool:
            for job in jobs:
                pool.submit(job)
            while pool.pending:
                finished(pool.next()[1])
    return [done[t.name] for t in trials if t.name in done]


def _train_sequentially(jobs, run_dir, plan, reporter, count, sinks, failures, finished,
                        placement: Placement, cache: dict) -> None:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmjax-compile")
    try:
        future = pool.submit(compile_job, jobs[0], cache, placement) if jobs else None
        for i, job in enumerate(jobs):
            try:
                compiled = future.result()
            except Exception:  # noqa: BLE001 -- compiled (and reported) again in _guarded
                compiled = None
            future = (pool.submit(compile_job, jobs[i + 1], cache, placement)
                      if i + 1 < len(jobs) else None)
            finished(_guarded(job, run_dir, plan, reporter, count, sinks, failures,
                              compiled=compiled, placement=placement, cache=cache))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _guarded(job: Job, run_dir: Path, plan, reporter, count, sinks, failures,
             compiled=None, placement: Placement = DEFAULT_PLACEMENT, stop=None, cache=None
             ) -> dict[str, TrialSummary]:
    """Run one job; a failure (an exception other than a run-directory or config problem, or
    an interrupt) fails only its trials: written to their ``failed.json``, named in a warning
    and in ``failures``, and retried by ``--resume``."""
    from lstmjax.experiment.errors import ConfigError

    try:
        summaries = _run_job(job, [run_dir / t.name for t in job.trials],
                             [plan[t.name] != "new" for t in job.trials], reporter, count,
                             compiled, sinks, placement, stop, cache)
    except (ConfigError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 -- whatever a trial raises fails that trial only
        message = one_line(f"{type(e).__name__}: {e}")[:300]
        for t in job.trials:
            write_failure(run_dir / t.name, message)
            failures.append({"trial": t.name, "error": message})
        warn(f"trial {job.name} failed ({message}); the other trials continue, "
             "`--resume` retries it")
        return {}
    return {t.name: s for t, s in zip(job.trials, summaries, strict=True)}


class _Pool:
    """Worker threads, one per device: each runs whole jobs on its device (or, for a job
    submitted with a placement, on that placement's devices). ``next()`` returns
    ``(job, {trial name: summary})`` as jobs finish; an interrupt raised in a worker is
    re-raised here, and leaving the ``with`` block stops and joins the workers."""

    def __init__(self, devices, run_dir, plan, reporter, count, sinks, failures, cache: dict):
        import queue
        import threading

        self.devices = list(devices)
        self.args = (run_dir, plan, reporter, count, sinks, failures)
        self.stop = threading.Event()
        self.todo: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.pending = 0
        self.threads: list = []
        self._free = queue.Queue()
        for d in self.devices:
            self._free.put(d)
        self._cache = cache

    def __enter__(self):
        return self

    def submit(self, job: Job, placement: Placement | None = None) -> None:
        import threading

        self.pending += 1
        thread = threading.Thread(target=self._work, args=(job, placement), daemon=True,
                                  name=f"lstmjax-{len(self.threads)}")
        self.threads.append(thread)
        thread.start()

    def _work(self, job: Job, placement: Placement | None) -> None:
        device = None
        try:
            if placement is None or not placement.devices:
                device = self._free.get()  # wait for a device to come free
                placement = Placement((device,))
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.results.put((job, _guarded(job, *self.args, placement=placement,
                                            stop=self.stop, cache=self._cache), None))
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            self.results.put((job, {}, e))
        finally:
            if device is not None:
                self._free.put(device)

    def next(self) -> tuple[Job, dict]:
        job, summaries, error = self.results.get()
        self.pending -= 1
        if error is not None:
            raise error
        return job, summaries

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _search_frontier(cfg: ExperimentConfig, variants: list[Trial], run_dir: Path,
                     reporter: Reporter, resume: bool, sinks: loggers.Loggers | None = None,
                     devices: list | None = None, failures: list | None = None):
    """Per variant, probes planned by :func:`lstmjax.experiment.frontier.plan` from that
    variant's own outcomes until its search is done; returns (summaries, frontier per
    variant). One device: rounds of one probe per unfinished variant. Several: each variant's
    search goes on as soon as its probe finishes (one probe per device at a time); the
    decisions depend only on each variant's outcomes, so they are the same either way. A
    variant whose probe fails stops searching (its frontier is marked incomplete)."""
    from lstmjax.experiment.resources import check_fits

    failures = [] if failures is None else failures
    known: dict[str, dict[int, float]] = {v.name: {} for v in variants}
    found: dict[str, frontier.FrontierResult] = {}
    summaries: list[TrialSummary] = []
    stopped: set[str] = set()
    inits: dict = {}  # compiled initialisers, shared by all rounds (one per cell, not per gap)
    index = 0
    states: dict[str, str] = {}

    def next_probe(v: Trial) -> Trial | None:
        nonlocal index
        gap, found[v.name] = frontier.plan(cfg.frontier, known[v.name])
        if gap is None or v.name in stopped:
            return None
        trial = frontier.probe(cfg, v, gap, index)
        index += 1
        check_fits([trial])
        states.update(plan_trials(run_dir, [trial]) if resume else {trial.name: "new"})
        return trial

    def record(v: Trial, trial: Trial, summary: TrialSummary | None) -> None:
        if summary is None:  # failed: named in failures
            stopped.add(v.name)
            found[v.name] = dataclasses.replace(found[v.name], complete=False)
            return
        known[v.name][int(trial.gap)] = summary.solved_fraction
        summaries.append(summary)

    data_parallel = data_parallel_placement(variants, devices or []) is not None
    if devices is None or len(devices) <= 1 or data_parallel:  # rounds, one probe at a time
        while True:
            batch = [(v, t) for v in variants if (t := next_probe(v)) is not None]
            if not batch:
                return summaries, found
            got = {s.trial: s for s in _train([t for _, t in batch], states, run_dir, reporter,
                                              0, sinks, devices if data_parallel else None,
                                              failures=failures, cache=inits)}
            for v, t in batch:
                record(v, t, got.get(t.name))
    owner: dict[str, Trial] = {}
    with _Pool(devices, run_dir, states, reporter, 0, sinks, failures, inits) as pool:
        for v in variants:
            if (t := next_probe(v)) is not None:
                owner[t.name] = v
                pool.submit(Job((t,)))
        while pool.pending:
            job, got = pool.next()
            trial = job.trials[0]
            v = owner[trial.name]
            record(v, trial, got.get(trial.name))
            if (t := next_probe(v)) is not None:
                owner[t.name] = v
                pool.submit(Job((t,)))
    return summaries, found


def evaluate_lengths(trainer, cfg: ExperimentConfig, state) -> list[dict]:
    """Length generalisation: the trained parameters of every seed evaluated at each
    ``eval.lengths`` value of ``task.length`` on a fresh batch (``fold_in(seed key, 4)``, the
    same for every length's draw of a seed). Returns one dict per length: ``length``,
    ``trained`` (whether it is the training length) and per-seed lists ``loss``,
    ``loss_vs_chance``, ``accuracy``, ``solved``."""
    import jax
    import numpy as np

    out = []
    for length in cfg.eval.lengths:
        program = length_eval_program(trainer, cfg, length)
        metrics = jax.device_get(program(state.params, state.key))
        entry = {"length": length, "trained": length == cfg.task.length}
        for name in ("loss", "loss_vs_chance", "accuracy", "solved"):
            values = np.asarray(metrics[name])
            entry[name] = [bool(v) if name == "solved" else float(v) for v in values]
        out.append(entry)
    return out


def length_eval_program(trainer, cfg: ExperimentConfig, length: int):
    """The jitted program of :func:`evaluate_lengths` at one length: ``(params, keys) ->
    metrics`` over the seed axis."""
    import jax

    from lstmjax import tasks
    from lstmjax._util import hashable

    batch_size = cfg.eval.batch_size or cfg.train.eval_batch_size
    task = tasks.make(cfg.task.name, length=length, **hashable(cfg.task.params))

    def one(params, key):
        sample = getattr(task, "sample_eval", task.sample)
        batch = sample(jax.random.fold_in(key, 4), batch_size)
        outputs = trainer.model.apply(params, batch.inputs, batch.lengths, None, True)
        return task.evaluate(outputs, batch)

    return jax.jit(jax.vmap(one))


def _missing_evaluations(lines: list[dict], step: int, every: int) -> int:
    """How many evaluations up to ``step`` have no metric line (every evaluation has a line of
    at least one active seed: the loop stops when all seeds are frozen)."""
    have = {m["step"] for m in lines}
    return sum(1 for s in range(every, step + 1, every) if s not in have)


def check_dtypes(trials: list[Trial]) -> None:
    """Never record a dtype that was not used: float64 cells need 64-bit JAX (``lstmjax run``
    turns it on at program start for such configs), and a sweep may not mix float64 with other
    dtypes (64-bit mode would change the float32 trials' task data and losses)."""
    import jax

    dtypes = {t.cfg.model.options.get("dtype", "float32") for t in trials}
    if "float64" not in dtypes:
        return
    if len(dtypes) > 1:
        others = ", ".join(sorted(dtypes - {"float64"}))
        raise RunError(
            f"model.options.dtype: the sweep mixes float64 with {others}; "
            "run the float64 trials as a config of their own"
        )
    if not jax.config.jax_enable_x64:
        raise RunError(
            "model.options.dtype: float64 needs 64-bit JAX, which is off in this process; "
            "`lstmjax run` turns it on for such configs, in Python call "
            "jax.config.update('jax_enable_x64', True) at program start"
        )


def needs_x64(cfg: ExperimentConfig) -> bool:
    """Whether any trial of ``cfg`` asks for float64 cells (the CLI then enables 64-bit JAX)."""
    return any(t.cfg.model.options.get("dtype") == "float64" for t in expand(cfg))


# ----------------------------------------------------------------------------------------------
# One trial
# ----------------------------------------------------------------------------------------------


def run_trial(
    trial: Trial,
    trial_dir: Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    count: int = 1,
    compiled: CompiledTrial | None = None,
    sinks: loggers.Loggers | None = None,
) -> TrialSummary:
    """Train one trial (all its seeds in one program) in ``trial_dir``; returns its summary.

    With ``resume`` a valid ``summary.json`` means finished (returned as it is); otherwise the
    trial continues from its newest valid checkpoint. ``compiled``: the trial's programs from
    :func:`compile_trial` (compiled here if absent).
    """
    return _run_job(Job((trial,)), [Path(trial_dir)], [resume], reporter or Reporter(), count,
                    compiled, sinks)[0]


def _run_job(job: Job, dirs: list[Path], resumes: list[bool], reporter: Reporter, count: int,
             compiled: CompiledTrial | None = None, sinks: loggers.Loggers | None = None,
             placement: Placement = DEFAULT_PLACEMENT, stop=None, cache: dict | None = None
             ) -> list[TrialSummary]:
    """Train the trials of ``job`` as one program (their seeds side by side on the seed
    axis); each trial keeps its own directory, metrics, checkpoints and summary, and is
    finished (summary written) as soon as all its seeds are frozen or its steps are done.
    ``stop`` (an event): raise KeyboardInterrupt at the next chunk boundary once it is set."""
    import jax

    if len(job.trials) == 1 and resumes[0] and (dirs[0] / SUMMARY_FILE).exists():
        trial = job.trials[0]
        try:
            summary = read_finished(dirs[0])
            reporter._message(
                f"{position_label(trial.index, count)} {trial.name}: finished earlier, skipped"
            )
            return [summary]
        except DamagedFile:
            pass  # warned about by plan_run; train it again from its checkpoint

    t_start = time.monotonic()
    compiled = compiled or compile_job(job, cache, placement)
    trainer, chunk = compiled.trainer, compiled.chunk
    cfg, tc = job.trials[0].cfg, job.trials[0].cfg.train
    fresh = compiled.init(*compiled.init_args)
    sinks = loggers.Loggers() if sinks is None else sinks
    diag = Diagnoser(trainer, cfg) if cfg.diagnostics is not None else None
    runs, lo = [], 0
    for trial, trial_dir, resume in zip(job.trials, dirs, resumes, strict=True):
        hi = lo + len(trial.cfg.train.seeds)
        runs.append(_TrialRun(trial, trial_dir, resume, (lo, hi), sinks, diag))
        lo = hi
    whole = len(runs) == 1
    if whole:
        state = runs[0].begin(fresh, lambda: compiled.init(*compiled.init_args))
    else:  # a learning-rate group, resumed as the same program where its trials agree
        state = _begin_group(runs, fresh, placement)
        if state is None:
            warn(f"{job.name}: its trials stopped at different steps; they are resumed one by "
                 "one (results equal to float tolerance, not bit for bit)")
            return [_run_job(Job((r.trial,)), [r.dir], [r.resume], reporter, count, None,
                             sinks, placement, stop, cache)[0] for r in runs]
    where = placement.label if placement.devices else ""
    for run in runs:
        if run.finished is None:
            run.open_progress(reporter, count, tc.steps, where)
            run.check_done(state if whole else _take(state, run.seeds))

    steps_run, first_chunk_s, step = 0, None, int(state.step[0])
    t_loop = time.monotonic()
    while not all(run.done for run in runs):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        t = time.monotonic()
        state, metrics = chunk(state)
        metrics = jax.device_get(metrics)
        if first_chunk_s is None:
            first_chunk_s = time.monotonic() - t
        new_step = int(metrics["step"][0])
        steps_run, step = steps_run + new_step - step, new_step
        for run in runs:
            if not run.done:
                run.after_chunk(state if whole else _take(state, run.seeds),
                                _take(metrics, run.seeds), step)
    loop_s = time.monotonic() - t_loop

    # throughput after compilation (chunks after the first), in seed-steps per second: the
    # program's, each trial credited with its share of the seeds
    throughput = None
    if steps_run > trainer.steps_per_chunk and first_chunk_s is not None:
        later = loop_s - first_chunk_s
        if later > 0:
            throughput = (steps_run - trainer.steps_per_chunk) * job.seeds / later
    out = []
    for run in runs:
        if run.finished is not None:  # finished before this resume: kept as it was
            out.append(run.finished)
            continue
        share = None if throughput is None else throughput * run.n_seeds / job.seeds
        out.append(run.finish(trainer, state if whole else _take(state, run.seeds), dict(
            wall_time_s=time.monotonic() - t_start, compile_s=compiled.compile_s,
            first_chunk_s=first_chunk_s, seed_steps_per_s=share)))
    return out


def _begin_group(runs: list[_TrialRun], fresh, placement: Placement):
    """The state of a resumed learning-rate group: every unfinished trial restored at the
    same step (or all new), each finished one's final checkpoint standing in for it (its seeds
    are frozen, so only the step clock had moved on); None when the trials disagree (e.g. a
    kill between two trials' checkpoints), and then nothing has been changed."""
    import jax
    import jax.numpy as jnp

    steps = {}
    for run in runs:
        latest = Checkpointer(run.dir / CHECKPOINT_DIR).latest_step() if run.resume else None
        if run.resume and (run.dir / SUMMARY_FILE).exists():
            try:
                run.finished = read_finished(run.dir)
            except DamagedFile:
                run.finished = None
            if run.finished is not None and latest is None:
                return None
        if run.finished is None:
            steps[run.trial.name] = latest or 0
    if len(set(steps.values())) != 1:
        return None
    common = next(iter(steps.values()))
    parts = []
    for run in runs:
        like = _take(fresh, run.seeds)
        if run.finished is not None:
            step, part = Checkpointer(run.dir / CHECKPOINT_DIR).restore_latest(like)
            if step is None or step > common:
                return None
            run.done = True
            part = part._replace(step=jnp.full_like(part.step, common))
        else:
            part = run.begin(like, lambda like=like: like)
            if int(part.step[0]) != common:
                return None
        parts.append(part)
    state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
    sharding = placement.sharding()
    return state if sharding is None else jax.device_put(state, sharding)


def _take(tree, seeds: tuple[int, int]):
    """The seeds ``[lo, hi)`` of a pytree with a leading seed axis."""
    import jax

    lo, hi = seeds
    return jax.tree.map(lambda x: x[lo:hi], tree)


class _TrialRun:
    """One trial's bookkeeping inside a job: its directory, metric lines, diagnostics,
    checkpoints and loggers, for the seeds ``seeds = (lo, hi)`` of the job's program."""

    def __init__(self, trial: Trial, trial_dir: Path, resume: bool, seeds: tuple[int, int],
                 sinks: loggers.Loggers, diag: Diagnoser | None):
        self.trial, self.dir, self.resume, self.seeds = trial, trial_dir, resume, seeds
        self.n_seeds = seeds[1] - seeds[0]
        self.sinks, self.diag = sinks, diag
        self.cfg = trial.cfg
        self.seed_ids = list(self.cfg.train.seeds)
        self.lines: list[dict] = []
        self.diag_lines: list[dict] = []
        self.restored: int | None = None
        self.done = False
        self.state = None  # the trial's state once it is done
        self.finished: TrialSummary | None = None  # finished before a resume of its group

    def begin(self, fresh, reinit):
        """Prepare the directory; returns the trial's state: ``fresh``, or restored from its
        newest valid checkpoint when resuming (``reinit()`` rebuilds a fresh state)."""
        cfg, tc = self.cfg, self.cfg.train
        config_path = self.dir / CONFIG_FILE
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir, TRIAL_FILES)
        resume = self.resume
        if resume and config_path.exists():
            try:
                check_same_config(read_yaml(config_path), to_dict(cfg), config_path)
            except DamagedFile:
                resume = False  # warned about by plan_run; start again
        self.checkpoints = Checkpointer(self.dir / CHECKPOINT_DIR,
                                        keep=cfg.output.keep_checkpoints)
        state, restored = fresh, None
        if resume:
            restored, state = self.checkpoints.restore_latest(fresh)
            if restored is None and self.checkpoints.steps():
                warn(f"{self.dir}: no valid checkpoint; the trial is trained again from the "
                     "start")
        if restored is not None:
            self.lines = [m for m in read_metrics(self.dir / METRICS_FILE, strict=False)
                          if m["step"] <= restored]
            missing = _missing_evaluations(self.lines, restored, tc.eval_every)
            if missing:
                # Continuing would leave a hole in the learning curve (and a summary built
                # from it); randomness is a function of (seed, step), so retraining
                # reproduces it.
                warn(f"{self.dir / METRICS_FILE}: no metrics for {missing} evaluation(s) up "
                     f"to step {restored} (missing or damaged); the trial is trained again "
                     "from the start so that its learning curve is complete")
                restored, self.lines = None, []
                state = reinit()
        if restored is None:
            self.checkpoints.clear()
            write_config(config_path, to_dict(cfg))
            atomic_write_text(self.dir / METRICS_FILE, "")
        clear_failure(self.dir)
        self.restored = restored
        if self.diag is not None:
            if restored is not None:
                self.diag_lines = [d for d in read_diagnostics(self.dir / DIAGNOSTICS_FILE)
                                   if d["step"] <= restored]
            if not self.diag_lines:  # at initialisation (every seed starts the same way)
                self.diag_lines = self.diag.lines(fresh if restored is None else reinit(), 0)
        # the other loggers (lstmjax.experiment.loggers) get only records after the checkpoint
        self.sinks.open_trial(self.trial, resumed_from=restored)
        if restored is None:
            self.sinks.diagnostics(self.trial, self.diag_lines)
        self.last_saved = int(state.step[0])
        return state

    def open_progress(self, reporter: Reporter, count: int, total: int, where: str) -> None:
        self.progress = reporter.open(self.trial.index, count, self.trial.name, total,
                                      self.n_seeds, where)

    def check_done(self, state) -> None:
        tc = self.cfg.train
        self.done = int(state.step[0]) >= tc.steps or _all_frozen(state, tc.early_stop)
        if self.done:
            self.state = state

    def after_chunk(self, state, metrics: dict, step: int) -> None:
        tc = self.cfg.train
        new_lines = _metric_lines(metrics, self.seed_ids)
        self.lines += new_lines
        self.sinks.metrics(self.trial, new_lines)
        self.progress.update(step, *_status(self.lines, self.seed_ids, state))
        self.check_done(state)
        if self.diag is not None and (self.done or self.diag.due(step - tc.eval_every, step)):
            new_diag = self.diag.lines(state, step)
            self.diag_lines += new_diag
            self.sinks.diagnostics(self.trial, new_diag)
        if self.done or step - self.last_saved >= self.cfg.output.checkpoint_every:
            write_metrics(self.dir / METRICS_FILE, self.lines)
            if self.diag is not None:
                write_diagnostics(self.dir / DIAGNOSTICS_FILE, self.diag_lines)
            self.checkpoints.save(step, state)
            self.last_saved = step

    def finish(self, trainer, state, timing: dict) -> TrialSummary:
        """Write the trial's summary (and final metrics); ``state``: the job's state now, used
        only if the trial did not finish earlier than the job."""
        state = self.state if self.state is not None else state
        summary = _summarise(self.trial, trainer.task, state, self.lines, self.seed_ids)
        summary = summary.replace(resumed_from_step=self.restored, **timing)
        if self.cfg.eval is not None and self.cfg.eval.lengths:
            summary = summary.replace(length_eval=evaluate_lengths(trainer, self.cfg, state))
        write_metrics(self.dir / METRICS_FILE, self.lines)
        if self.diag is not None:
            write_diagnostics(self.dir / DIAGNOSTICS_FILE, self.diag_lines)
        write_summary(self.dir / SUMMARY_FILE, summary)
        self.sinks.close_trial(self.trial)
        note = "" if self.restored is None else f" (resumed from step {self.restored})"
        self.progress.end(int(state.step[0]), *_status(self.lines, self.seed_ids, state), note)
        return summary


class CompiledTrial(NamedTuple):
    """A job's trainer and its compiled programs: ``init(*init_args)`` and ``chunk(state)``
    over all its seeds (of all its trials)."""

    trainer: Any
    init: Any
    chunk: Any
    compile_s: float
    init_args: tuple = ()


def compile_trial(trial: Trial, cache: dict | None = None) -> CompiledTrial:
    """Build and compile a trial's programs (ahead of time, so a run can prepare the next trial
    while the current one trains). ``cache`` shares compiled initialisers between trials that
    build the same parameters (e.g. one cell at several gaps)."""
    return compile_job(Job((trial,)), cache)


def compile_job(job: Job, cache: dict | None = None, placement: Placement = DEFAULT_PLACEMENT
                ) -> CompiledTrial:
    """Build and compile a job's programs for ``placement`` (default: the default device):
    the vmapped initialiser over (seed key, learning rate) and the vmapped chunk."""
    import jax

    from lstmjax.train import make_trainer

    t0 = time.monotonic()
    cfg = job.trials[0].cfg
    trainer = make_trainer(cfg, placement.batch_sharding())
    args = _job_init_args(job)
    sharding = placement.sharding()
    if sharding is not None:
        args = jax.device_put(args, sharding)
    init, abstract = _cached_init(trainer, cfg, cache if cache is not None else {}, args,
                                  sharding, placement.label)
    chunk = jax.jit(seeds_in_one_program(trainer.chunk, cfg.train.vmap_seeds), donate_argnums=0)
    if sharding is not None:
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract)
    return CompiledTrial(trainer, init, chunk.lower(abstract).compile(),
                         time.monotonic() - t0, args)


def _init_args(cfg: ExperimentConfig):
    """(stacked PRNG keys of the seeds, the learning rate per seed) for the vmapped init."""
    import jax
    import jax.numpy as jnp

    keys = jnp.stack([jax.random.PRNGKey(s) for s in cfg.train.seeds])
    return keys, jnp.full((len(cfg.train.seeds),), cfg.train.learning_rate, jnp.float32)


def _job_init_args(job: Job):
    """:func:`_init_args` of each trial of ``job``, side by side on the seed axis."""
    import jax.numpy as jnp

    parts = [_init_args(t.cfg) for t in job.trials]
    if len(parts) == 1:
        return parts[0]
    return (jnp.concatenate([k for k, _ in parts]), jnp.concatenate([lr for _, lr in parts]))


def seeds_in_one_program(chunk, vmap: bool = True):
    """``chunk`` over a leading seed axis: ``jax.vmap`` (one batched step for all seeds), or,
    with ``vmap=False``, ``lax.map`` (the seeds one after another inside the same program --
    faster where the batched working set outgrows the CPU caches)."""
    import jax

    if vmap:
        return jax.vmap(chunk)
    return lambda state: jax.lax.map(chunk, state)


def _cached_init(trainer, cfg: ExperimentConfig, cache: dict, args, sharding=None,
                 where: str = ""):
    """(compiled vmapped ``trainer.init(keys, learning_rates)``, shapes of the state it
    returns), shared by jobs that build the same parameters and optimiser state (same model,
    optimiser settings, task sizes, number of seeds and placement)."""
    import jax

    train = {k: v for k, v in to_dict(cfg.train).items() if k != "learning_rate"}
    train["seeds"] = int(args[0].shape[0])
    key = json.dumps(
        [to_dict(cfg.model), train, trainer.task.input_size, trainer.task.output_size, where],
        sort_keys=True,
    )
    if key not in cache:
        init = jax.jit(jax.vmap(trainer.init, in_axes=(0, 0)),
                       **({} if sharding is None else {"out_shardings": sharding}))
        cache[key] = (init.lower(*args).compile(), init.eval_shape(*args))
    return cache[key]


def _all_frozen(state, early_stop: bool) -> bool:
    import numpy as np

    diverged = np.asarray(state.diverged_step) >= 0
    solved = (np.asarray(state.solved_step) >= 0) if early_stop else np.zeros_like(diverged)
    return bool(np.all(diverged | solved))


def _metric_lines(metrics: dict, seeds: list[int]) -> list[dict]:
    """One dict per seed that was active during the chunk: step, seed, then the metrics."""
    out = []
    for i, seed in enumerate(seeds):
        if not bool(metrics["active"][i]):
            continue
        line = {"step": int(metrics["step"][i]), "seed": seed}
        for name in sorted(metrics, key=_metric_order):
            if name in ("step", "active"):
                continue
            value = metrics[name]
            v = value[i].item()
            line[name] = None if isinstance(v, float) and not math.isfinite(v) else v
        out.append(line)
    return out


_FIRST = ("train_loss", "grad_norm", "lr", "loss", "loss_vs_chance", "accuracy", "solved")
_LAST = ("diverged", "updates")


def _metric_order(name: str) -> tuple[int, int, str]:
    """Line key order: training metrics, the task's main metrics, its extras, then flags."""
    if name in _FIRST:
        return (0, _FIRST.index(name), name)
    if name in _LAST:
        return (2, _LAST.index(name), name)
    return (1, 0, name)


def _status(lines: list[dict], seeds: list[int], state) -> tuple[float, int, int]:
    """(median latest eval loss over seeds, solved seeds, diverged seeds) for progress."""
    import numpy as np

    latest: dict[int, float] = {}
    for line in lines:
        if line.get("loss") is not None:
            latest[line["seed"]] = line["loss"]
    loss = statistics.median(latest.values()) if latest else float("nan")
    solved = int(np.sum(np.asarray(state.solved_step) >= 0))
    diverged = int(np.sum(np.asarray(state.diverged_step) >= 0))
    return loss, solved, diverged


def _summarise(trial: Trial, task, state, lines: list[dict], seeds: list[int]) -> TrialSummary:
    import numpy as np

    solved_step = np.asarray(state.solved_step)
    diverged_step = np.asarray(state.diverged_step)
    updates = np.asarray(state.updates)
    last: dict[int, dict] = {}
    for line in lines:
        last[line["seed"]] = line
    per_seed = []
    factor = trial.cfg.train.blowup_factor
    for i, seed in enumerate(seeds):
        final = last.get(seed, {})
        loss = final.get("loss")
        diverged = bool(diverged_step[i] >= 0)
        blew_up = (factor is not None and not diverged and loss is not None
                   and loss > factor * float(task.chance_loss))
        per_seed.append(SeedResult(
            seed=seed,
            solved=bool(solved_step[i] >= 0),
            steps_to_solve=int(solved_step[i]) if solved_step[i] >= 0 else None,
            final_loss=final.get("loss"),
            final_accuracy=final.get("accuracy"),
            diverged=bool(diverged_step[i] >= 0),
            diverged_step=int(diverged_step[i]) if diverged_step[i] >= 0 else None,
            steps_trained=int(updates[i]),
            blew_up=blew_up,
        ))
    cfg = trial.cfg
    return TrialSummary.build(
        per_seed,
        trial=trial.name,
        index=trial.index,
        values=trial.values,
        variant=trial.variant,
        task=cfg.task.name,
        cell=cfg.model.cell,
        length=cfg.task.length,
        chance_loss=float(task.chance_loss),
        loss_type=task.loss_type,
        steps=cfg.train.steps,
        seeds=seeds,
    )
