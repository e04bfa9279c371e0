"""One trial's directory while it trains (:class:`TrialRun`): where it starts, its metric lines,
status and diagnostics, its checkpoints, and its summary -- and the length evaluation that goes
into the summary.

Crash safety: every file is replaced atomically (lstmjax._io) and orbax commits a checkpoint by
renaming its directory. After each chunk boundary that is due for a checkpoint the trial first
rewrites ``metrics.jsonl`` and then saves the checkpoint, so the metrics always reach at least
the checkpoint's step; ``--resume`` restores the newest checkpoint and drops metric lines past
it. Randomness depends only on (seed, step), so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from lstmjax._io import atomic_write_text, remove_stale_temporaries
from lstmjax.experiment import loggers
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.diagnose import Diagnoser
from lstmjax.experiment.outcome import classify, eval_curves
from lstmjax.experiment.progress import Reporter, position_label
from lstmjax.experiment.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    TRIAL_FILES,
    Checkpointer,
    DamagedFile,
    TrialState,
    check_same_config,
    clear_failure,
    read_diagnostics,
    read_finished,
    read_metrics,
    read_yaml,
    warn,
    write_config,
    write_diagnostics,
    write_metrics,
    write_summary,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["TrialRun", "read_back", "evaluate_lengths", "length_eval_program"]


def read_back(trial: Trial, trial_dir: Path, reporter: Reporter, count: int
              ) -> TrialSummary | None:
    """A trial that finished earlier: its summary (reported as skipped), or None when its
    files turn out damaged (then it is trained again from its checkpoint)."""
    try:
        summary = read_finished(trial_dir)
    except DamagedFile:
        return None  # warned about by plan_run
    if summary is not None:
        reporter.note(f"{position_label(trial.index, count)} {trial.name}: finished earlier, "
                      "skipped")
    return summary


class TrialRun:
    """One trial's directory while it trains, for the seeds ``seeds = (lo, hi)`` of its job's
    program: where it starts (:meth:`begin`: new, resumed from its newest valid checkpoint, or
    trained again from the start -- decided there, in that order), its metric lines,
    diagnostics, checkpoints and loggers, and its summary (:meth:`finish`). ``state``: what
    the run's plan found in its directory (:class:`~lstmjax.experiment.rundir.TrialState`)."""

    def __init__(self, trial: Trial, trial_dir: Path, state: TrialState, seeds: tuple[int, int],
                 *, sinks: loggers.Loggers, diag: Diagnoser | None = None):
        self.trial, self.dir, self.seeds = trial, trial_dir, seeds
        self.resume = TrialState(state) is not TrialState.NEW
        self.extend = TrialState(state) is TrialState.EXTEND
        self.raised_from: int | None = None  # train.steps before a raised budget
        self.n_seeds = seeds[1] - seeds[0]
        self.sinks, self.diag = sinks, diag
        self.cfg = trial.cfg
        self.seed_ids = list(self.cfg.train.seeds)
        self.lines: list[dict] = []
        self.diag_lines: list[dict] = []
        self.restored: int | None = None
        self.done = False
        self.final = None  # the trial's train state once it is done
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
                self.raised_from = check_same_config(read_yaml(config_path), to_dict(cfg),
                                                     config_path)
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
            self.raised_from = None
        elif self.raised_from is not None:
            # A raised budget: the summary of the smaller one goes first (a kill before the
            # new config is written then finds the old config and no summary: extended again),
            # then the config with the new budget (a kill after it finds an unfinished trial).
            (self.dir / SUMMARY_FILE).unlink(missing_ok=True)
            write_config(config_path, to_dict(cfg))
        clear_failure(self.dir)
        self.restored = restored
        if self.diag is not None:
            if restored is not None:
                self.diag_lines = [d for d in read_diagnostics(self.dir / DIAGNOSTICS_FILE)
                                   if d["step"] <= restored]
                if self.raised_from is not None and not self.diag.due(
                        restored - tc.eval_every, restored):
                    # recorded because the smaller budget ended there; a run made with the
                    # larger budget has no diagnostics at that step
                    self.diag_lines = [d for d in self.diag_lines if d["step"] != restored]
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
            self.final = state

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
        state = self.final if self.final is not None else state
        summary = _summarise(self.trial, trainer.task, state, self.lines, self.seed_ids)
        summary = summary.replace(resumed_from_step=self.restored,
                                  budget_raised_from=self.raised_from, **timing)
        if self.cfg.eval is not None and self.cfg.eval.lengths:
            summary = summary.replace(length_eval=evaluate_lengths(trainer, self.cfg, state))
        write_metrics(self.dir / METRICS_FILE, self.lines)
        if self.diag is not None:
            write_diagnostics(self.dir / DIAGNOSTICS_FILE, self.diag_lines)
        write_summary(self.dir / SUMMARY_FILE, summary)
        self.sinks.close_trial(self.trial)
        note = "" if self.restored is None else f" (resumed from step {self.restored})"
        if self.raised_from is not None:
            note = (f" (budget raised from {self.raised_from} to {self.cfg.train.steps} steps; "
                    f"continued from step {self.restored})")
        self.progress.end(int(state.step[0]), *_status(self.lines, self.seed_ids, state), note)
        return summary


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
    from lstmjax.experiment.compile_cache import compiler_options

    batch_size = cfg.eval.batch_size or cfg.train.eval_batch_size
    task = tasks.make(cfg.task.name, length=length, **hashable(cfg.task.params))

    def one(params, key):
        sample = getattr(task, "sample_eval", task.sample)
        batch = sample(jax.random.fold_in(key, 4), batch_size)
        outputs = trainer.model.apply(params, batch.inputs, batch.lengths, None, True)
        return task.evaluate(outputs, batch)

    return jax.jit(jax.vmap(one), compiler_options=compiler_options())


def _missing_evaluations(lines: list[dict], step: int, every: int) -> int:
    """How many evaluations up to ``step`` have no metric line (every evaluation has a line of
    at least one active seed: the loop stops when all seeds are frozen)."""
    have = {m["step"] for m in lines}
    return sum(1 for s in range(every, step + 1, every) if s not in have)


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
    curves = eval_curves(lines)
    per_seed = []
    factor = trial.cfg.train.blowup_factor
    for i, seed in enumerate(seeds):
        final = last.get(seed, {})
        loss = final.get("loss")
        diverged = bool(diverged_step[i] >= 0)
        blew_up = (factor is not None and not diverged and loss is not None
                   and loss > factor * float(task.chance_loss))
        solved = bool(solved_step[i] >= 0)
        per_seed.append(SeedResult(
            seed=seed,
            solved=solved,
            steps_to_solve=int(solved_step[i]) if solved_step[i] >= 0 else None,
            final_loss=final.get("loss"),
            final_accuracy=final.get("accuracy"),
            diverged=bool(diverged_step[i] >= 0),
            diverged_step=int(diverged_step[i]) if diverged_step[i] >= 0 else None,
            steps_trained=int(updates[i]),
            blew_up=blew_up,
            outcome=classify(*curves.get(seed, ([], [])), float(task.chance_loss),
                             solved=solved, diverged=diverged or blew_up),
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

