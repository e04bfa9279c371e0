"""One job: one compiled program (:func:`compile_job`: the vmapped initialiser, shared through a
cache, and the vmapped chunk) and its chunk loop over the job's trials (:func:`train_job`). A
job is a trial's seeds, or several trials that differ only in learning rate
(:mod:`lstmjax.experiment.schedule`); each trial's directory is a
:class:`~lstmjax.experiment.trial_run.TrialRun`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, NamedTuple

from lstmjax.experiment import loggers
from lstmjax.experiment.compile_cache import compiler_options
from lstmjax.experiment.diagnose import Diagnoser
from lstmjax.experiment.gap_programs import shared_chunk, shared_diagnoser
from lstmjax.experiment.progress import Reporter
from lstmjax.experiment.rundir import (
    CHECKPOINT_DIR,
    SUMMARY_FILE,
    Checkpointer,
    DamagedFile,
    TrialState,
    read_finished,
    warn,
)
from lstmjax.experiment.schedule import DEFAULT_PLACEMENT, Job, Placement, init_key
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial
from lstmjax.experiment.trial_run import TrialRun, read_back

__all__ = ["JobContext", "Slot", "CompiledTrial", "train_job", "run_trial", "compile_job",
           "compile_trial", "seeds_in_one_program"]


@dataclasses.dataclass
class JobContext:
    """What every job of a run shares: the run directory, the progress display and loggers,
    ``count`` (the run's trials, for progress labels; 0: not known in advance), ``states``
    (trial name -> :class:`~lstmjax.experiment.rundir.TrialState`; absent: new), ``cache``
    (compiled initialisers shared by jobs that build the same parameters) and ``dirs``
    (a trial directory other than ``run_dir / name``)."""

    run_dir: Path
    reporter: Reporter
    sinks: loggers.Loggers
    count: int = 1
    states: dict = dataclasses.field(default_factory=dict)
    cache: dict = dataclasses.field(default_factory=dict)
    dirs: dict = dataclasses.field(default_factory=dict)
    # watch(trial, step, its metric lines so far) -> True: stop the trial there (a search's
    # pruner); it is finished with what it has, its summary's pruned_at_step set
    watch: Any = None

    def dir_of(self, trial: Trial) -> Path:
        return self.dirs.get(trial.name) or self.run_dir / trial.name

    def state_of(self, trial: Trial) -> TrialState:
        return TrialState(self.states.get(trial.name, TrialState.NEW))


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where and how one job runs: its ``placement``, its programs if they were compiled
    ahead (``compiled``), and ``stop`` (an event: raise KeyboardInterrupt at the next chunk
    boundary once it is set)."""

    placement: Placement = DEFAULT_PLACEMENT
    compiled: CompiledTrial | None = None
    stop: Any = None


class CompiledTrial(NamedTuple):
    """A job's trainer and its compiled programs: ``init(*init_args)`` and
    ``chunk(state, total)`` over all its seeds (of all its trials); ``total``: the step budget
    (an int32 scalar, ``train.steps``)."""

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
                                  sharding=sharding, where=placement.label)
    chunk = jax.jit(_seeds_to_budget(trainer.chunk_to, cfg.train.vmap_seeds), donate_argnums=0)
    if sharding is not None:
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract)
    budget = jax.ShapeDtypeStruct((), jax.numpy.int32)
    # a frontier's gaps share one program (the gap a runtime value): gap_programs
    shared = shared_chunk(cfg, cache if cache is not None else {}, abstract, placement)
    if shared is None:
        shared = chunk.lower(abstract, budget).compile(compiler_options=compiler_options())
    return CompiledTrial(trainer, init, shared, time.monotonic() - t0, args)


def _seeds_to_budget(chunk_to, vmap: bool = True):
    """``chunk_to(state, total)`` over a leading seed axis of ``state`` (``total``, the step
    budget, shared by the seeds): one program for every budget, so a budget raised on resume
    continues with the very program that trained the steps before it."""
    import jax

    if vmap:
        batched = jax.vmap(chunk_to, in_axes=(0, None))
    else:
        batched = lambda state, total: jax.lax.map(lambda s: chunk_to(s, total), state)  # noqa: E731

    def chunk(state, total):  # (so that compile logs and counts say jit(chunk))
        return batched(state, total)

    return chunk


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


def _cached_init(trainer, cfg: ExperimentConfig, cache: dict, args, *, sharding=None,
                 where: str = ""):
    """(compiled vmapped ``trainer.init(keys, learning_rates)``, shapes of the state it
    returns), shared by jobs that build the same parameters and optimiser state (same model,
    optimiser settings, task sizes, number of seeds and placement)."""
    import jax

    key = init_key(cfg, int(args[0].shape[0]), trainer.task.input_size,
                   trainer.task.output_size, where)
    if key not in cache:
        init = jax.jit(jax.vmap(trainer.init, in_axes=(0, 0)),
                       **({} if sharding is None else {"out_shardings": sharding}))
        cache[key] = (init.lower(*args).compile(compiler_options=compiler_options("once")),
                      init.eval_shape(*args))
    return cache[key]


def train_job(job: Job, ctx: JobContext, slot: Slot = Slot()) -> list[TrialSummary]:
    """Train the trials of ``job`` as one program (their seeds side by side on the seed
    axis); returns their summaries, in order. Each trial keeps its own directory, metrics,
    checkpoints and summary (:class:`~lstmjax.experiment.trial_run.TrialRun`), and is finished
    (summary written) as soon as all its seeds are frozen or its steps are done. This is the
    executor's default way of training a job (its ``train_job`` seam)."""
    import jax
    import numpy as np

    if len(job.trials) == 1 and ctx.state_of(job.trials[0]) not in (TrialState.NEW,
                                                                     TrialState.EXTEND):
        trial = job.trials[0]
        if (ctx.dir_of(trial) / SUMMARY_FILE).exists():
            summary = read_back(trial, ctx.dir_of(trial), ctx.reporter, ctx.count)
            if summary is not None:
                return [summary]

    t_start = time.monotonic()
    placement = slot.placement
    compiled = slot.compiled or _prepare(job, ctx, placement)
    trainer, chunk = compiled.trainer, compiled.chunk
    cfg, tc = job.trials[0].cfg, job.trials[0].cfg.train
    fresh = compiled.init(*compiled.init_args)
    diag = shared_diagnoser(cfg, ctx.cache)  # (a frontier's gaps sharing one program)
    if diag is None and cfg.diagnostics is not None:
        diag = Diagnoser(trainer, cfg)
    runs, lo = [], 0
    for trial in job.trials:
        hi = lo + len(trial.cfg.train.seeds)
        runs.append(TrialRun(trial, ctx.dir_of(trial), ctx.state_of(trial), (lo, hi),
                             sinks=ctx.sinks, diag=diag))
        lo = hi
    whole = len(runs) == 1
    if whole:
        state = runs[0].begin(fresh, lambda: compiled.init(*compiled.init_args))
    else:  # a learning-rate group, resumed as the same program where its trials agree
        state = _begin_group(runs, fresh, placement)
        if state is None:
            warn(f"{job.name}: its trials stopped at different steps; they are resumed one by "
                 "one (results equal to float tolerance, not bit for bit)")
            alone = dataclasses.replace(slot, compiled=None)
            return [train_job(Job((r.trial,)), ctx, alone)[0] for r in runs]
    where = placement.label if placement.devices else ""
    for run in runs:
        if run.finished is None:
            run.open_progress(ctx.reporter, ctx.count, tc.steps, where)
            run.check_done(state if whole else _take(state, run.seeds))

    budgets = {r.trial.cfg.train.steps for r in runs}
    if len(budgets) != 1:  # (a group differs only in learning rate)
        raise ValueError(f"{job.name}: its trials have different train.steps {sorted(budgets)}")
    total = np.int32(tc.steps)
    steps_run, first_chunk_s, step = 0, None, int(state.step[0])
    t_loop = time.monotonic()
    while not all(run.done for run in runs):
        if slot.stop is not None and slot.stop.is_set():
            raise KeyboardInterrupt
        t = time.monotonic()
        state, metrics = chunk(state, total)
        metrics = jax.device_get(metrics)
        if first_chunk_s is None:
            first_chunk_s = time.monotonic() - t
        new_step = int(metrics["step"][0])
        steps_run, step = steps_run + new_step - step, new_step
        for run in runs:
            if not run.done:
                part = state if whole else _take(state, run.seeds)
                run.after_chunk(part, _take(metrics, run.seeds), step)
                if not run.done and ctx.watch and ctx.watch(run.trial, step, run.lines):
                    run.done, run.final, run.pruned_at = True, part, step
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
            first_chunk_s=first_chunk_s, seed_steps_per_s=share,
            pruned_at_step=getattr(run, "pruned_at", None))))
    return out


def _begin_group(runs: list[TrialRun], fresh, placement: Placement):
    """The state of a resumed learning-rate group: every unfinished trial restored at the
    same step (or all new), each finished one's final checkpoint standing in for it (its seeds
    are frozen, so only the step clock had moved on); None when the trials disagree (e.g. a
    kill between two trials' checkpoints), and then nothing has been changed."""
    import jax
    import jax.numpy as jnp

    steps = {}
    for run in runs:
        latest = Checkpointer(run.dir / CHECKPOINT_DIR).latest_step() if run.resume else None
        if run.resume and not run.extend and (run.dir / SUMMARY_FILE).exists():
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
    trial_dir = Path(trial_dir)
    ctx = JobContext(trial_dir.parent, reporter or Reporter(),
                     loggers.Loggers() if sinks is None else sinks, count,
                     {trial.name: TrialState.RESUME if resume else TrialState.NEW},
                     dirs={trial.name: trial_dir})
    return train_job(Job((trial,)), ctx, Slot(compiled=compiled))[0]


def _prepare(job: Job, ctx: JobContext, placement: Placement) -> CompiledTrial:
    """Compile ``job`` for ``placement`` (ahead: the executor does it in a thread), shown on
    the progress display."""
    with ctx.reporter.compiling(job.label) as shown:
        shown.seconds = (compiled := compile_job(job, ctx.cache, placement)).compile_s
    return compiled


train_job.prepare = _prepare  # the executor compiles the next job while one trains
