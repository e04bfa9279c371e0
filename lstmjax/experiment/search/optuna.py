"""``sweep.method: optuna``: a TPE study proposes the trials, one after another.

    sweep:
      method: optuna
      num_trials: 24
      seed: 0
      objective: median_final_loss     # a statistic of the trial's summary.json
      direction: minimize              # default: the objective's natural direction
      train.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
      model.options.forget_bias: {uniform: [0.0, 3.0]}

The syntax and the random search are :mod:`lstmjax.experiment.space`. :class:`OptunaSearch`
asks the study for a point; the executor trains it as an ordinary trial of the run directory
(named from its values, seeds vmapped, checkpointed) and the search tells the study the
trial's objective; a trial without the statistic
(no seed solved, every seed diverged) counts as the worst value. The first
``min(10, ceil(num_trials / 3))`` points are drawn at random (TPE's start-up), the rest by TPE;
the sampler is seeded per trial from ``(sweep.seed, trial number)``, so a resumed study proposes
what the uninterrupted one would have.

The study lives in ``RUN_DIR/optuna.db`` (optuna's RDB storage on SQLite: every ask and tell is
a committed transaction). ``--resume`` continues it: finished trials are kept, a trial that was
interrupted is trained on from its checkpoint and then told, a told trial whose ``summary.json``
is gone or damaged is trained on from its checkpoint (the study keeps its value), and new
trials are asked for until the study holds ``num_trials``. A point whose values equal an earlier
trial's (rounded as :mod:`lstmjax.experiment.space` rounds them) gets that trial's result
without training again; a point that does not make a valid trial is told as failed, with a
warning.

The study records the config it searches for (a user attribute). ``--resume`` refuses, before
anything is written, an ``optuna.db`` that holds another study -- another config's, another
study name, or parameters that differ from the config's search space -- in one line naming the
file and the mismatch. If ``optuna.db`` is gone (deleted, or moved away because it was another
study's) while trials have finished, ``--resume`` recreates the study from those trials'
``summary.json`` files, with a warning (each is told its objective; what the lost study would
have proposed next is not recovered, so later proposals differ from an uninterrupted study's).
The report, likewise, reads the trials' summaries on disk and not only the study: a missing or
foreign study costs a warning, never the finished trials' rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.rundir import (
    STUDY_FILE,
    RunError,
    plan_trials,
    warn,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.search.result import SearchResult
from lstmjax.experiment.search.study import (  # noqa: F401 -- (names of this module before)
    CONFIG_ATTR,
    STUDY_NAME,
    _distributions,
    _finished,
    _open,
    _quiet,
    _recreate,
    _Replay,
    _sections,
    check_study,
    collect,
    finished_on_disk,
    objective_value,
    picks_from,
)
from lstmjax.experiment.space import SearchSpace, identity
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["STUDY_FILE", "OptunaSearch", "run_optuna", "check_study", "collect",
           "finished_on_disk", "objective_value", "picks_from", "startup_trials", "first_asks"]


# train(trial, state) -> its summary, or None if it failed; state as rundir.plan_trials gives it
TrainOne = Callable[[Trial, str], "TrialSummary | None"]


class OptunaSearch:
    """The study of ``cfg`` in ``run_dir``, one trial at a time: :meth:`ask` gives the next
    point to train (an interrupted one first, when resuming), :meth:`tell` tells the study its
    objective. A point whose values repeat an earlier trial's, or that makes no valid trial,
    is told at once and never asked. ``trials``: the search space's probe points (the
    pre-flight checks); ``resume``: check first that ``run_dir``'s study is ``cfg``'s
    (:func:`check_study`); ``note(text)``: a line per told trial."""

    fixed = False
    streams = False

    def __init__(self, cfg: ExperimentConfig, run_dir: Path | None, trials=(), *,
                 resume: bool = False, count: int = 1,
                 note: Callable[[str], None] | None = None):
        if count > 1:
            raise RunError("sweep.method: an optuna study runs in one process (it proposes one "
                           "trial at a time); run it without --num-processes")
        if resume and run_dir is not None:
            check_study(run_dir, cfg)  # another study's optuna.db: refused, nothing written
        self.cfg, self.run_dir = cfg, None if run_dir is None else Path(run_dir)
        self.upfront = self.largest = tuple(trials)
        self.size = cfg.search.num_trials
        self.note = note or (lambda _: None)
        self._steps = None  # the study, driven as a generator: yields a trial, is sent its result
        self._out: Trial | None = None  # the trial waiting to be asked for, or being trained
        self._given = False  # whether _out was asked for
        self._done = False
        self._summaries: dict[int, TrialSummary] = {}
        self._best: dict | None = None

    def ask(self) -> list[Trial]:
        if self._steps is None:
            self._steps = self._drive()
            self._advance(None, first=True)
        if self._out is None or self._given:
            return []
        self._given = True
        return [self._out]

    def tell(self, trial: Trial, summary: TrialSummary | None) -> None:
        if self._out is None or not self._given or trial.name != self._out.name:
            raise ValueError(f"{trial.name}: told without being asked (or told twice)")
        self._advance(summary)

    def result(self) -> SearchResult:
        return SearchResult(tuple(self._summaries[n] for n in sorted(self._summaries)),
                            {"best": self._best})

    def _advance(self, summary: TrialSummary | None, first: bool = False) -> None:
        import optuna

        self._out, self._given = None, False
        if self._done:
            return
        with _quiet(optuna):
            try:
                self._out = next(self._steps) if first else self._steps.send(summary)
            except StopIteration:
                self._done = True

    def _drive(self):
        """The study as a generator: ``summary = yield trial`` for each trial to train."""
        import optuna

        cfg, run_dir, space, note = self.cfg, self.run_dir, self.cfg.search, self.note
        study = _open(optuna, run_dir, create=True, direction=space.direction)
        if CONFIG_ATTR not in study.user_attrs:
            study.set_user_attr(CONFIG_ATTR, _sections(cfg))
        if not study.get_trials(deepcopy=False):
            _recreate(optuna, study, run_dir, cfg)
        replay = _Replay(cfg)
        outcomes: dict[int, float | None] = {}  # trial number -> value (None: failed)
        summaries = self._summaries

        def settle(number: int, params: dict):
            trial, first = replay.trial(number, params)
            if first is not None:
                if first not in outcomes:
                    return  # its trial failed: both are settled when --resume retries it
                value = outcomes[first]
                note(f"optuna trial {number + 1}/{space.num_trials}: the values of trial "
                     f"{first + 1}; its result is reused")
            elif isinstance(trial, ConfigError):
                warn(f"optuna trial {number + 1}: {trial}; the study is told that it failed")
                value = None
            else:
                summary = yield trial
                if summary is None:
                    return  # it failed (named by the executor); left running, --resume retries
                summaries[number] = summary
                value = objective_value(summary, space)
                told = [v for v in (*outcomes.values(), value) if v is not None]
                best = (min if space.direction == "minimize" else max)(told)
                note(f"optuna trial {number + 1}/{space.num_trials}: {space.objective} "
                     f"{value:.4g} (best so far {best:.4g})")
            outcomes[number] = value
            if value is None:
                study.tell(number, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(number, value)

        for ft in study.get_trials(deepcopy=False):
            if ft.state == optuna.trial.TrialState.RUNNING:  # interrupted: train on, then tell
                yield from settle(ft.number, ft.params)
                continue
            trial, first = replay.trial(ft.number, ft.params)
            outcomes[ft.number] = ft.value if ft.state == optuna.trial.TrialState.COMPLETE else None
            if first is None and isinstance(trial, Trial):
                summary = _finished(run_dir, trial)
                if summary is None and ft.state == optuna.trial.TrialState.COMPLETE:
                    # told, but its summary.json is gone or damaged: trained on (from its last
                    # valid checkpoint, if any) -- plan_trials names the damage
                    summary = yield trial
                if summary is not None:
                    summaries[ft.number] = summary
        distributions = _distributions(optuna, space)
        while (number := len(study.get_trials(deepcopy=False))) < space.num_trials:
            study.sampler = _sampler(optuna, space, number)
            asked = study.ask(distributions)
            yield from settle(asked.number, asked.params)
        self._best = _best(optuna, study, replay, space)


def run_optuna(cfg: ExperimentConfig, run_dir: Path, train: TrainOne,
               note: Callable[[str], None] | None = None) -> tuple[list[TrialSummary], dict | None]:
    """Run (or continue) the study of ``cfg`` in ``run_dir`` with :class:`OptunaSearch`,
    training each asked trial with ``train`` (in this thread); returns (the summaries of its
    distinct trials in the order proposed, the best trial ``{"trial", "number", "objective",
    "direction", "value", "values"}`` or None)."""
    search = OptunaSearch(cfg, run_dir, resume=True, note=note)
    while asked := search.ask():
        for trial in asked:
            search.tell(trial, train(trial, plan_trials(run_dir, [trial])[trial.name]))
    result = search.result()
    return list(result.summaries), result.extra["best"]




def startup_trials(space: SearchSpace) -> int:
    """How many of a study's first trials TPE draws at random (its start-up)."""
    return min(10, math.ceil(space.num_trials / 3))


def _sampler(optuna, space: SearchSpace, number: int):
    """TPE seeded from (sweep.seed, trial number): the same proposal whether or not the study
    was interrupted before it."""
    import numpy as np

    seed = int(np.random.SeedSequence([space.seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(space))


def first_asks(cfg: ExperimentConfig) -> list[tuple[Trial | ConfigError, int | None]]:
    """The points a new study of ``cfg`` proposes first, before any result is known (TPE's
    random start-up, :func:`startup_trials` of them), as :meth:`OptunaSearch.ask` makes them:
    per study trial, (its trial -- or why its values make none --, the number of an earlier
    trial with the same values or None). An in-memory study: nothing is written."""
    import optuna

    space = cfg.search
    out = []
    with _quiet(optuna):
        study = optuna.create_study(direction=space.direction)
        replay, distributions = _Replay(cfg), _distributions(optuna, space)
        for number in range(startup_trials(space)):
            study.sampler = _sampler(optuna, space, number)
            asked = study.ask(distributions)
            out.append(replay.trial(asked.number, asked.params))
    return out




def _best(optuna, study, replay: _Replay, space: SearchSpace) -> dict | None:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None
    best = study.best_trial
    trial = replay.trials[replay.first[identity(picks_from(space, best.params))]]
    return {"trial": trial.name, "number": best.number, "objective": space.objective,
            "direction": space.direction, "value": best.value, "values": trial.values}
