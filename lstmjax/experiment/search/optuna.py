"""``sweep.method: optuna``: a TPE study proposes the trials, one per device at a time.

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
what the uninterrupted one would have. Drawn floats are rounded by the sampler itself, so the
study stores exactly the value the trial trained with (``0.004585``, not ``0.004585013671513607``).

Several devices (``output.devices`` > 1): up to one trial per device trains at once; trial ``n``
is asked once trials ``0 .. n - devices`` are told, and results are told in trial order, so the
proposals do not depend on which trial finishes first (:class:`OptunaSearch`). What does depend
on the schedule: a pruner's decisions, which read the other trials' intermediate values as they
are when a chunk reports.

Pruning (``sweep.pruner``, :mod:`~lstmjax.experiment.search.pruning`): after each evaluation
chunk the trial reports its objective so far (``trial.report(value, step)``, ``step`` the
training step) and stops when ``trial.should_prune()`` says so. A pruned trial writes its
summary with what it has (``pruned_at_step``), is told to the study as pruned, shows as pruned
in ``results.csv`` (outcome) and in the report's leaderboard, and is not trained again by
``--resume``. A trial resumed from an interrupted process is not pruned (optuna hands out a
reporting handle only to the process that asked for the trial).

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
import threading
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
from lstmjax.experiment.space import SearchSpace, identity, round_value
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["STUDY_FILE", "OptunaSearch", "run_optuna", "check_study", "collect",
           "finished_on_disk", "objective_value", "picks_from", "startup_trials", "first_asks"]


# train(trial, state) -> its summary, or None if it failed; state as rundir.plan_trials gives it
TrainOne = Callable[[Trial, str], "TrialSummary | None"]


class OptunaSearch:
    """The study of ``cfg`` in ``run_dir``: :meth:`ask` gives the points to train (interrupted
    ones first, when resuming), at most :attr:`width` at a time, :meth:`tell` tells the study
    each one's objective (a pruned trial as pruned). A point whose values repeat an earlier
    trial's, or that makes no valid trial, is settled without training and never asked.
    ``trials``: the search space's probe points (the pre-flight checks); ``resume``: check
    first that ``run_dir``'s study is ``cfg``'s (:func:`check_study`); ``note(text)``: a line
    per told trial.

    Several at a time (``width`` > 1, set by the executor to its device count): trial ``n`` is
    asked once trials ``0 .. n - width`` have all been told, and results are told to the
    study in trial order (one that finishes early waits for those before it), so the study
    holds the same trials, in the same states, at each ask whatever order the results arrive
    in -- the proposals do not depend on the schedule. A device may idle while an earlier
    trial finishes. With ``width == 1`` this is the one-after-another study."""

    fixed = False
    streams = True  # each asked trial trains alone on one device
    width = 1  # trials trained at once (the executor sets it)

    def __init__(self, cfg: ExperimentConfig, run_dir: Path | None, trials=(), *,
                 resume: bool = False, count: int = 1,
                 note: Callable[[str], None] | None = None):
        if count > 1:
            raise RunError("sweep.method: an optuna study runs in one process (it proposes one "
                           "trial at a time); run it without --num-processes")
        if resume and run_dir is not None:
            check_study(run_dir, cfg)  # another study's optuna.db: refused, nothing written
        self.cfg, self.run_dir = cfg, None if run_dir is None else Path(run_dir)
        self.space = cfg.search
        self.upfront = self.largest = tuple(trials)
        self.size = cfg.search.num_trials
        self.note = note or (lambda _: None)
        # watch(trial, step, metric lines) -> stop: the pruner's per-chunk hook (None: no pruner)
        self.watch = self._watch if self.space.pruner != "none" else None
        self._lock = threading.RLock()  # the study, from the main thread and the devices' ones
        self._study = None
        self._replay = _Replay(cfg)
        self._queue: list[tuple[int, Trial, bool]] = []  # (number, trial, tell it?) to train first
        self._inflight: dict[str, tuple[int, bool]] = {}  # trial name -> (number, tell it?)
        self._handles: dict[str, object] = {}  # trial name -> its optuna Trial (for pruning)
        self._known: dict[int, tuple[str, float | None]] = {}  # number -> (state, value)
        self._untold: set[int] = set()  # numbers whose outcome is known, not yet told
        self._waiting: dict[int, list[int]] = {}  # number -> later numbers with its values
        self._next_tell = 0  # every number below it is settled in the study
        self._summaries: dict[int, TrialSummary] = {}

    def ask(self) -> list[Trial]:
        import optuna

        with self._lock, _quiet(optuna):
            if self._study is None:
                self._begin(optuna)
            out = []
            while len(self._inflight) < max(1, self.width):
                trial = self._next(optuna)
                if trial is None:
                    break
                out.append(trial)
            return out

    def tell(self, trial: Trial, summary: TrialSummary | None) -> None:
        import optuna

        with self._lock, _quiet(optuna):
            if trial.name not in self._inflight:
                raise ValueError(f"{trial.name}: told without being asked (or told twice)")
            number, settle = self._inflight.pop(trial.name)
            self._handles.pop(trial.name, None)
            if summary is not None:
                self._summaries[number] = summary
            if not settle:  # told before; trained on because its summary was lost
                return
            if summary is None:  # it failed (named by the executor); left running,
                self._resolve(optuna, number, ("running", None))  # --resume retries it
                return
            value = objective_value(summary, self.space)
            state = "complete" if summary.pruned_at_step is None else "pruned"
            done = [v for s, v in self._known.values() if s == "complete"]
            if state == "complete":
                done.append(value)
            best = (min if self.space.direction == "minimize" else max)(done) if done else None
            what = ("" if state == "complete" else
                    f" (pruned at step {summary.pruned_at_step})")
            self.note(f"optuna trial {number + 1}/{self.space.num_trials}: "
                      f"{self.space.objective} {value:.4g}{what}"
                      + ("" if best is None else f" (best so far {best:.4g})"))
            self._resolve(optuna, number, (state, value))

    def result(self) -> SearchResult:
        best = None
        if self._study is not None:
            import optuna

            with self._lock, _quiet(optuna):
                best = _best(optuna, self._study, self._replay, self.space)
        return SearchResult(tuple(self._summaries[n] for n in sorted(self._summaries)),
                            {"best": best})

    def _watch(self, trial: Trial, step: int, lines: list[dict]) -> bool:
        """Report the trial's objective so far at ``step``; True: the pruner stops it. A trial
        resumed from an earlier process is not watched (optuna's public API hands out a
        reporting handle only when it asks for the trial)."""
        import optuna

        from lstmjax.experiment.search.pruning import interim_value

        handle = self._handles.get(trial.name)
        if handle is None:
            return False
        value = interim_value(trial, lines, step, self.space)
        with self._lock, _quiet(optuna):
            handle.report(value, step)
            return bool(handle.should_prune())

    def _begin(self, optuna) -> None:
        """Open (or create, or recreate) the study and replay what it holds: finished trials
        are known, interrupted ones are queued to train on."""
        from lstmjax.experiment.search.pruning import make_pruner

        cfg, run_dir, space = self.cfg, self.run_dir, self.space
        study = _open(optuna, run_dir, create=True, direction=space.direction)
        study.pruner = make_pruner(optuna, space)
        self._study = study
        if CONFIG_ATTR not in study.user_attrs:
            study.set_user_attr(CONFIG_ATTR, _sections(cfg))
        if not study.get_trials(deepcopy=False):
            _recreate(optuna, study, run_dir, cfg)
        states = optuna.trial.TrialState
        for ft in study.get_trials(deepcopy=False):
            if ft.state == states.RUNNING:  # interrupted: train on, then tell
                trial = self._propose(optuna, ft.number, ft.params)
                if trial is not None:
                    self._queue.append((ft.number, trial, True))
                continue
            trial, first = self._replay.trial(ft.number, ft.params)
            self._known[ft.number] = (
                {states.COMPLETE: "complete", states.PRUNED: "pruned"}.get(ft.state, "fail"),
                ft.value)
            if first is None and isinstance(trial, Trial):
                summary = _finished(run_dir, trial)
                if summary is None and ft.state in (states.COMPLETE, states.PRUNED):
                    # told, but its summary.json is gone or damaged: trained on (from its last
                    # valid checkpoint, if any) -- plan_trials names the damage
                    self._queue.append((ft.number, trial, False))
                if summary is not None:
                    self._summaries[ft.number] = summary
        self._flush(optuna)

    def _next(self, optuna) -> Trial | None:
        """The next trial to train: a queued one, else a new point of the study once the
        trials ``width`` before it are told; None when there is none now."""
        if self._queue:
            number, trial, settle = self._queue.pop(0)
            self._inflight[trial.name] = (number, settle)
            return trial
        study, space = self._study, self.space
        distributions = _distributions(optuna, space)
        while True:
            number = len(study.get_trials(deepcopy=False))
            if number >= space.num_trials or number - max(1, self.width) >= self._next_tell:
                return None
            study.sampler = _sampler(optuna, space, number)
            asked = study.ask(distributions)
            trial = self._propose(optuna, asked.number, asked.params)
            if trial is not None:
                self._inflight[trial.name] = (asked.number, True)
                self._handles[trial.name] = asked
                return trial

    def _propose(self, optuna, number: int, params: dict) -> Trial | None:
        """The trial to train for study trial ``number``; None when it is settled without
        training (its values repeat an earlier trial's, or make no valid trial)."""
        trial, first = self._replay.trial(number, params)
        if first is not None:
            if first in self._known:
                self._repeat(optuna, number, first)
            else:  # the earlier trial is still training: settled with it
                self._waiting.setdefault(first, []).append(number)
            return None
        if isinstance(trial, ConfigError):
            warn(f"optuna trial {number + 1}: {trial}; the study is told that it failed")
            self._resolve(optuna, number, ("fail", None))
            return None
        return trial

    def _repeat(self, optuna, number: int, first: int) -> None:
        if self._known[first][0] != "running":
            self.note(f"optuna trial {number + 1}/{self.space.num_trials}: the values of trial "
                      f"{first + 1}; its result is reused")
        self._resolve(optuna, number, self._known[first])

    def _resolve(self, optuna, number: int, outcome: tuple[str, float | None]) -> None:
        """``number``'s outcome is known (``running``: its training failed, it is left
        running): told once every trial before it is."""
        self._known[number] = outcome
        self._untold.add(number)
        for later in self._waiting.pop(number, []):
            self._repeat(optuna, later, number)
        self._flush(optuna)

    def _flush(self, optuna) -> None:
        """Tell the study the known outcomes, in trial order."""
        states = optuna.trial.TrialState
        while self._next_tell in self._known:
            number = self._next_tell
            if number in self._untold:
                self._untold.discard(number)
                state, value = self._known[number]
                if state == "complete":
                    self._study.tell(number, value)
                elif state == "pruned":
                    self._study.tell(number, state=states.PRUNED)
                elif state == "fail":
                    self._study.tell(number, state=states.FAIL)
            self._next_tell += 1


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
    was interrupted before it; its draws rounded as trained (:func:`_rounding`)."""
    import numpy as np

    seed = int(np.random.SeedSequence([space.seed, number]).generate_state(1)[0])
    return _rounding(optuna, optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials(space)), space)


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


def _rounding(optuna, inner, space: SearchSpace):
    """``inner`` with each ``uniform``/``loguniform`` draw rounded to the digits a trial
    trains with (:func:`~lstmjax.experiment.space.round_value`), so the study stores the value
    that trained. Why a sampler: optuna has no public way to change a trial's stored parameter
    after the suggestion, a ``FloatDistribution`` cannot express "4 significant digits" (its
    ``step`` is a fixed spacing), and rounding where the value is drawn keeps the study, the
    trial's config and its name equal; ``BaseSampler`` is optuna's public extension point."""

    def rounded(name, value):
        axis = space.axes.get(name)
        if axis is None or axis.kind not in ("uniform", "loguniform"):
            return value
        return round_value(float(value), *axis.values)

    class Rounding(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            found = inner.sample_relative(study, trial, search_space)
            return {k: rounded(k, v) for k, v in found.items()}

        def sample_independent(self, study, trial, param_name, param_distribution):
            return rounded(param_name, inner.sample_independent(
                study, trial, param_name, param_distribution))

        def before_trial(self, study, trial):
            inner.before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            inner.after_trial(study, trial, state, values)

        def reseed_rng(self):
            inner.reseed_rng()

    return Rounding()


def _best(optuna, study, replay: _Replay, space: SearchSpace) -> dict | None:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None
    best = study.best_trial
    trial = replay.trials[replay.first[identity(picks_from(space, best.params))]]
    return {"trial": trial.name, "number": best.number, "objective": space.objective,
            "direction": space.direction, "value": best.value, "values": trial.values}
