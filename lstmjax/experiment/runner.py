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

import json
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from lstmjax._io import atomic_write_text, remove_stale_temporaries
from lstmjax.experiment import frontier, loggers
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.diagnose import Diagnoser, read_diagnostics, write_diagnostics
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
    plan_run,
    plan_trials,
    prepare,
    read_finished,
    read_metrics,
    read_yaml,
    run_dir_for,
    warn,
    write_config,
    write_metrics,
    write_summary,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import Trial, expand

__all__ = [
    "run_trials", "run_trial", "compile_trial", "seeds_in_one_program", "check_dtypes", "needs_x64",
]  # fmt: skip


def run_trials(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: str | Reporter | None = None,
    force_unlock: bool = False,
) -> dict:
    """Train every trial of ``cfg`` into its run directory; returns a run summary
    ``{"name", "run_dir", "wall_time_s", "trials": [summary.json dicts]}``.

    Without ``resume`` the directory must not exist yet (or be empty). With ``resume``,
    finished trials are skipped and unfinished ones continue from their last valid checkpoint;
    the config must match the one stored in the directory and in each trial. Every check
    (:func:`~lstmjax.experiment.rundir.plan_run`, dtypes, memory) runs before anything is
    written, and the directory is locked while the run writes to it (``force_unlock`` takes
    over another process's lock). ``progress``: ``auto``/``rich``/``plain``/``none`` or a
    :class:`Reporter` (default: ``cfg.output.progress``).
    """
    from lstmjax.experiment.resources import check_fits

    run_dir = run_dir_for(cfg, out_dir)
    trials = expand(cfg)  # with a frontier: the variants (the gap is searched)
    check_dtypes(trials)
    loggers.check_loggers(cfg)
    check_fits(trials if cfg.frontier is None else
               [frontier.probe(cfg, v, cfg.frontier.start, 0) for v in trials])
    RunLock(run_dir, force=force_unlock).check()
    plan = plan_run(run_dir, cfg, trials if cfg.frontier is None else [], resume)
    if not isinstance(progress, Reporter):
        progress = make_reporter(progress or cfg.output.progress)
    reporter = progress
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot create the run directory ({e.strerror or e})") from None
    t0 = time.monotonic()
    result: dict[str, Any] = {"name": cfg.name, "run_dir": str(run_dir)}
    with RunLock(run_dir, force=force_unlock):
        prepare(run_dir, to_dict(cfg))
        sinks = loggers.open_run(cfg, run_dir)
        try:
            if cfg.frontier is None:
                summaries = _train(trials, plan, run_dir, reporter, len(trials), sinks)
            else:
                summaries, found = _search_frontier(cfg, trials, run_dir, reporter, resume,
                                                    sinks)
                result["frontier"] = frontier.rows(trials, found)
        finally:
            reporter.close()
            sinks.close()
    result["wall_time_s"] = time.monotonic() - t0
    result["trials"] = [s.to_json() for s in summaries]
    return result


def _train(trials: list[Trial], plan: dict[str, str], run_dir: Path, reporter: Reporter,
           count: int, sinks: loggers.Loggers | None = None) -> list[TrialSummary]:
    """Train ``trials`` one after another (each trial's seeds in one program), compiling the
    next trial's program in a thread while the current one trains (XLA releases the GIL while
    compiling, and one small model leaves a core idle)."""
    todo = [t for t in trials if plan[t.name] != "finished"]
    summaries, cache, futures = [], {}, {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmjax-compile")

    def prefetch(i: int) -> None:
        if i < len(todo):
            futures[todo[i].name] = pool.submit(compile_trial, todo[i], cache)

    try:
        prefetch(0)
        for trial in trials:
            future = futures.pop(trial.name, None)
            if future is not None:
                prefetch(todo.index(trial) + 1)
            summaries.append(run_trial(
                trial, run_dir / trial.name, resume=plan[trial.name] != "new",
                reporter=reporter, count=count,
                compiled=future.result() if future else None, sinks=sinks,
            ))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return summaries


def _search_frontier(cfg: ExperimentConfig, variants: list[Trial], run_dir: Path,
                     reporter: Reporter, resume: bool, sinks: loggers.Loggers | None = None):
    """Rounds of probes, one per unfinished variant, until every variant's search is done
    (:func:`lstmjax.experiment.frontier.plan`); returns (summaries, frontier per variant)."""
    from lstmjax.experiment.resources import check_fits

    known: dict[str, dict[int, float]] = {v.name: {} for v in variants}
    found: dict[str, frontier.FrontierResult] = {}
    summaries: list[TrialSummary] = []
    index = 0
    while True:
        batch = []
        for v in variants:
            gap, found[v.name] = frontier.plan(cfg.frontier, known[v.name])
            if gap is not None:
                batch.append((v, frontier.probe(cfg, v, gap, index)))
                index += 1
        if not batch:
            return summaries, found
        probes = [t for _, t in batch]
        check_fits(probes)
        states = plan_trials(run_dir, probes) if resume else {t.name: "new" for t in probes}
        for (v, trial), summary in zip(
            batch, _train(probes, states, run_dir, reporter, 0, sinks), strict=True
        ):
            known[v.name][int(trial.gap)] = summary.solved_fraction
            summaries.append(summary)


def evaluate_lengths(trainer, cfg: ExperimentConfig, state) -> list[dict]:
    """Length generalisation: the trained parameters of every seed evaluated at each
    ``eval.lengths`` value of ``task.length`` on a fresh batch (``fold_in(seed key, 4)``, the
    same for every length's draw of a seed). Returns one dict per length: ``length``,
    ``trained`` (whether it is the training length) and per-seed lists ``loss``,
    ``loss_vs_chance``, ``accuracy``, ``solved``."""
    import jax
    import numpy as np

    from lstmjax import tasks
    from lstmjax._util import hashable

    batch_size = cfg.eval.batch_size or cfg.train.eval_batch_size
    out = []
    for length in cfg.eval.lengths:
        task = tasks.make(cfg.task.name, length=length, **hashable(cfg.task.params))

        def one(params, key, task=task):
            sample = getattr(task, "sample_eval", task.sample)
            batch = sample(jax.random.fold_in(key, 4), batch_size)
            outputs = trainer.model.apply(params, batch.inputs, batch.lengths, None, True)
            return task.evaluate(outputs, batch)

        metrics = jax.device_get(jax.jit(jax.vmap(one))(state.params, state.key))
        entry = {"length": length, "trained": length == cfg.task.length}
        for name in ("loss", "loss_vs_chance", "accuracy", "solved"):
            values = np.asarray(metrics[name])
            entry[name] = [bool(v) if name == "solved" else float(v) for v in values]
        out.append(entry)
    return out


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
    import jax

    reporter = reporter or Reporter()
    cfg, tc = trial.cfg, trial.cfg.train
    summary_path = trial_dir / SUMMARY_FILE
    config_path = trial_dir / CONFIG_FILE
    if resume and summary_path.exists():
        try:
            summary = read_finished(trial_dir)
            reporter.message(
                f"{position_label(trial.index, count)} {trial.name}: finished earlier, skipped"
            )
            return summary
        except DamagedFile:
            pass  # warned about by plan_run; train it again from its checkpoint

    t_start = time.monotonic()
    compiled = compiled or compile_trial(trial)
    trainer, chunk = compiled.trainer, compiled.chunk
    seeds = list(tc.seeds)
    state = compiled.init(*_init_args(cfg))

    trial_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(trial_dir, TRIAL_FILES)
    if resume and config_path.exists():
        try:
            check_same_config(read_yaml(config_path), to_dict(cfg), config_path)
        except DamagedFile:
            resume = False  # warned about by plan_run; start again
    checkpoints = Checkpointer(trial_dir / CHECKPOINT_DIR, keep=cfg.output.keep_checkpoints)
    lines: list[dict] = []
    restored = None
    if resume:
        restored, state = checkpoints.restore_latest(state)
        if restored is None and checkpoints.steps():
            warn(f"{trial_dir}: no valid checkpoint; the trial is trained again from the start")
    if restored is not None:
        lines = [m for m in read_metrics(trial_dir / METRICS_FILE, strict=False)
                 if m["step"] <= restored]
        missing = _missing_evaluations(lines, restored, tc.eval_every)
        if missing:
            # Continuing would leave a hole in the learning curve (and a summary built from
            # it); randomness is a function of (seed, step), so retraining reproduces it.
            warn(f"{trial_dir / METRICS_FILE}: no metrics for {missing} evaluation(s) up to "
                 f"step {restored} (missing or damaged); the trial is trained again from the "
                 "start so that its learning curve is complete")
            restored, lines = None, []
            state = compiled.init(*_init_args(cfg))
    if restored is None:
        checkpoints.clear()
        write_config(config_path, to_dict(cfg))
        atomic_write_text(trial_dir / METRICS_FILE, "")
    diag = Diagnoser(trainer, cfg) if cfg.diagnostics is not None else None
    diag_lines: list[dict] = []
    if diag is not None:
        if restored is not None:
            diag_lines = [d for d in read_diagnostics(trial_dir / DIAGNOSTICS_FILE)
                          if d["step"] <= restored]
        if not diag_lines:  # at initialisation (or rebuilt: every seed starts the same way)
            diag_lines = diag.lines(compiled.init(*_init_args(cfg)), 0)
    # the other loggers (lstmjax.experiment.loggers) get only records after the checkpoint
    sinks = loggers.Loggers() if sinks is None else sinks
    sinks.open_trial(trial, resumed_from=restored)
    if restored is None:
        sinks.diagnostics(trial, diag_lines)

    step = int(state.step[0])
    total = tc.steps
    reporter.start_trial(trial.index, count, trial.name, total, len(seeds))
    last_saved = step
    first_chunk_s = None
    steps_run = 0
    t_loop = time.monotonic()
    while step < total and not _all_frozen(state, tc.early_stop):
        t = time.monotonic()
        state, metrics = chunk(state)
        metrics = jax.device_get(metrics)
        if first_chunk_s is None:
            first_chunk_s = time.monotonic() - t
        new_lines = _metric_lines(metrics, seeds)
        lines += new_lines
        sinks.metrics(trial, new_lines)
        new_step = int(metrics["step"][0])
        steps_run += new_step - step
        step = new_step
        status = _status(lines, seeds, state)
        reporter.update(step, *status)
        done = step >= total or _all_frozen(state, tc.early_stop)
        if diag is not None and (done or diag.due(step - tc.eval_every, step)):
            new_diag = diag.lines(state, step)
            diag_lines += new_diag
            sinks.diagnostics(trial, new_diag)
        if done or step - last_saved >= cfg.output.checkpoint_every:
            write_metrics(trial_dir / METRICS_FILE, lines)
            if diag is not None:
                write_diagnostics(trial_dir / DIAGNOSTICS_FILE, diag_lines)
            checkpoints.save(step, state)
            last_saved = step
    loop_s = time.monotonic() - t_loop

    # throughput after compilation (chunks after the first), in seed-steps per second
    throughput = None
    if steps_run > trainer.steps_per_chunk and first_chunk_s is not None:
        later = loop_s - first_chunk_s
        if later > 0:
            throughput = (steps_run - trainer.steps_per_chunk) * len(seeds) / later
    summary = _summarise(trial, trainer.task, state, lines, seeds).replace(
        wall_time_s=time.monotonic() - t_start,
        compile_s=compiled.compile_s,
        first_chunk_s=first_chunk_s,
        seed_steps_per_s=throughput,
        resumed_from_step=restored,
    )
    if cfg.eval is not None and cfg.eval.lengths:
        summary = summary.replace(length_eval=evaluate_lengths(trainer, cfg, state))
    write_metrics(trial_dir / METRICS_FILE, lines)
    if diag is not None:
        write_diagnostics(trial_dir / DIAGNOSTICS_FILE, diag_lines)
    write_summary(summary_path, summary)
    sinks.close_trial(trial)
    note = "" if restored is None else f" (resumed from step {restored})"
    reporter.end_trial(step, *_status(lines, seeds, state), note)
    return summary


class CompiledTrial(NamedTuple):
    """A trial's trainer and its compiled programs: ``init(keys, learning_rate)`` and
    ``chunk(state)`` over all seeds."""

    trainer: Any
    init: Any
    chunk: Any
    compile_s: float


def compile_trial(trial: Trial, cache: dict | None = None) -> CompiledTrial:
    """Build and compile a trial's programs (ahead of time, so a run can prepare the next trial
    while the current one trains). ``cache`` shares compiled initialisers between trials that
    build the same parameters (e.g. one cell at several gaps)."""
    import jax

    from lstmjax.train import make_trainer

    t0 = time.monotonic()
    cfg = trial.cfg
    trainer = make_trainer(cfg)
    args = _init_args(cfg)
    init, abstract = _cached_init(trainer, cfg, cache if cache is not None else {}, args)
    chunk = jax.jit(seeds_in_one_program(trainer.chunk, cfg.train.vmap_seeds), donate_argnums=0)
    return CompiledTrial(trainer, init, chunk.lower(abstract).compile(), time.monotonic() - t0)


def _init_args(cfg: ExperimentConfig):
    """(stacked PRNG keys of the seeds, base learning rate) for the vmapped init."""
    import jax
    import jax.numpy as jnp

    keys = jnp.stack([jax.random.PRNGKey(s) for s in cfg.train.seeds])
    return keys, jnp.float32(cfg.train.learning_rate)


def seeds_in_one_program(chunk, vmap: bool = True):
    """``chunk`` over a leading seed axis: ``jax.vmap`` (one batched step for all seeds), or,
    with ``vmap=False``, ``lax.map`` (the seeds one after another inside the same program --
    faster where the batched working set outgrows the CPU caches)."""
    import jax

    if vmap:
        return jax.vmap(chunk)
    return lambda state: jax.lax.map(chunk, state)


def _cached_init(trainer, cfg: ExperimentConfig, cache: dict, args):
    """(compiled vmapped ``trainer.init(keys, learning_rate)``, shapes of the state it returns),
    shared by trials that build the same parameters and optimiser state (same model, optimiser
    settings, task sizes and number of seeds)."""
    import jax

    train = {k: v for k, v in to_dict(cfg.train).items() if k != "learning_rate"}
    train["seeds"] = len(cfg.train.seeds)
    key = json.dumps(
        [to_dict(cfg.model), train, trainer.task.input_size, trainer.task.output_size],
        sort_keys=True,
    )
    if key not in cache:
        init = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))
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
