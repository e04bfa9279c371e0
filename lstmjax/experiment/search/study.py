"""An optuna study as a file of the run directory (``optuna.db``): opened, checked against the
config it searches for, recreated from the finished trials when it is gone, and replayed into
the run's trials (:func:`collect`) -- the same names whether training or reporting."""


from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from lstmjax.experiment.config import trial_at
from lstmjax.experiment.errors import ConfigError, one_line
from lstmjax.experiment.rundir import (
    STUDY_FILE,
    SUMMARY_FILE,
    DamagedFile,
    RunError,
    _first_difference,
    _normalised,
    read_finished,
    warn,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.space import Pick, SearchSpace, identity, round_value
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial, group_label

__all__ = ["STUDY_FILE", "STUDY_NAME", "check_study", "collect", "finished_on_disk",
           "objective_value", "picks_from"]


STUDY_NAME = "lstmjax"


CONFIG_ATTR = "lstmjax.config"  # the study's user attribute: the config it searches for


_SECTIONS = ("name", "task", "model", "train", "sweep")  # what makes it the same experiment


def check_study(run_dir: Path, cfg: ExperimentConfig) -> None:
    """Before a resumed search writes anything: :class:`RunError` (one line) if ``run_dir``'s
    ``optuna.db`` cannot be opened or holds another study than ``cfg``'s. Opens it read-only."""
    import optuna

    path = Path(run_dir) / STUDY_FILE
    if not _has_study_file(path):
        return
    with _quiet(optuna):
        problem = _mismatch(optuna, _storage(optuna, path), cfg)
    if problem:
        raise RunError(_refusal(Path(run_dir), problem))


def collect(run_dir: Path, cfg: ExperimentConfig) -> list[Trial]:
    """The run's trials for the report: the distinct trials of the study in ``run_dir`` (those
    whose values repeat an earlier trial's, and failed points, left out), and every finished
    trial on disk that the study does not list (:func:`finished_on_disk`), in the order
    proposed; [] before anything exists. A study that is missing, cannot be opened or is
    another config's costs a one-line warning: the report is then built from the summaries."""
    run_dir = Path(run_dir)
    path = run_dir / STUDY_FILE
    out: list[Trial] = []
    problem = None if _has_study_file(path) else "missing"
    if problem is None:
        try:
            import optuna
        except ImportError:
            optuna, problem = None, "cannot be read without the package optuna"
    if problem is None:
        with _quiet(optuna):
            try:
                storage = _storage(optuna, path)
                problem = _mismatch(optuna, storage, cfg)
            except RunError as e:
                problem = str(e).removeprefix(f"{path.absolute()}: ")
            if problem is None:
                study = optuna.load_study(storage=storage, study_name=STUDY_NAME)
                replay = _Replay(cfg)
                for ft in study.get_trials(deepcopy=False):
                    trial, first = replay.trial(ft.number, ft.params)
                    if first is None and isinstance(trial, Trial):
                        out.append(trial)
    extra = finished_on_disk(run_dir, cfg, skip={t.name for t in out})
    if extra:
        why = problem or f"does not list {len(extra)} finished trial(s)"
        warn(f"{path}: {why}; the report is built from the trials' summaries on disk")
    return sorted(out + extra, key=lambda t: t.index)


def finished_on_disk(run_dir: Path, cfg: ExperimentConfig,
                     skip: set[str] = frozenset()) -> list[Trial]:
    """The finished trials of ``cfg``'s search in ``run_dir``'s trial directories (other than
    ``skip``), rebuilt from their ``summary.json`` (its values and study number), in that
    order. A summary that is damaged, or whose values are not a point of the search space, is
    named in a warning and left out."""
    run_dir = Path(run_dir)
    found = []
    for tdir in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
        if tdir.name in skip or tdir.is_symlink() or not (tdir / SUMMARY_FILE).is_file():
            continue
        try:
            summary = read_finished(tdir)
        except DamagedFile as e:
            warn(f"{e}; trial {tdir.name} is left out")
            continue
        picks = None if summary is None else _picks_from_values(cfg.search, summary.values)
        if picks is None or summary.trial != tdir.name:
            warn(f"{tdir / SUMMARY_FILE}: not a trial of this search (its name or values differ "
                 f"from the config's search space); trial {tdir.name} is left out")
            continue
        found.append((summary.index, tdir.name, picks))
    out = []
    for index, name, picks in sorted(found):
        try:
            trial = trial_at(cfg, index, picks, set())
        except ConfigError as e:
            warn(f"{run_dir / name / SUMMARY_FILE}: its values do not make a trial ({e}); "
                 f"trial {name} is left out")
            continue
        out.append(dataclasses.replace(trial, name=name))
    return out


def picks_from(space: SearchSpace, params: dict[str, Any]) -> dict[str, Pick]:
    """A study trial's parameters as the value of each swept key (floats rounded as a random
    search rounds them; a choice of lists or mappings is suggested by its position)."""
    picks = {}
    for key, axis in space.axes.items():
        p = params[key]
        if axis.is_choice:
            i = p if not _primitive(axis.values) else next(
                i for i, v in enumerate(axis.values) if v == p and type(v) is type(p))
            picks[key] = axis.pick(i)
        elif axis.kind == "int":
            picks[key] = Pick(int(p), axis.where, None)
        else:
            picks[key] = Pick(round_value(float(p), *axis.values), axis.where, None)
    return picks


def _sections(cfg: ExperimentConfig) -> dict:
    from lstmjax.experiment.config import to_dict

    full = to_dict(cfg)
    return {k: full.get(k) for k in _SECTIONS}


def _has_study_file(path: Path) -> bool:
    """Whether ``path`` may hold a study (SQLite leaves an empty file if killed creating it)."""
    return path.is_file() and path.stat().st_size > 0


def _refusal(run_dir: Path, problem: str) -> str:
    path = (run_dir / STUDY_FILE).absolute()
    return (f"{path}: {problem}; nothing was changed: move the file away (--resume then "
            "recreates the study from the finished trials) or use a new --out")


def _storage(optuna, path: Path):
    """``path``'s storage opened read-only (nothing is created or written)."""
    path = path.absolute()
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///file:{path}?mode=ro&uri=true",
                                             skip_table_creation=True)
        storage.get_all_studies()
        return storage
    except Exception as e:  # noqa: BLE001 -- sqlalchemy and optuna raise many kinds
        raise RunError(f"{path}: the optuna study cannot be opened ({type(e).__name__}: "
                       f"{one_line(e)[:120]})") from None


def _mismatch(optuna, storage, cfg: ExperimentConfig) -> str | None:
    """Why ``storage`` does not hold ``cfg``'s study (one phrase), or None."""
    space = cfg.search
    studies = storage.get_all_studies()
    names = [s.study_name for s in studies]
    if not studies:
        return None
    if STUDY_NAME not in names:
        return (f"holds the optuna study {names[0]!r}, not an lstmjax search's "
                f"(named {STUDY_NAME!r})")
    study = studies[names.index(STUDY_NAME)]
    stored = study.user_attrs.get(CONFIG_ATTR)
    if isinstance(stored, dict):
        stored = _normalised(stored)
        now = _sections(cfg)
        for key in _SECTIONS:
            if stored.get(key) != now[key]:
                diff = _first_difference(stored.get(key), now[key], key)
                return f"holds the study of another config ({diff})"
    directions = [d.name.lower() for d in study.directions]
    if directions != [space.direction]:
        return (f"its study is to {'/'.join(directions)}, the config's sweep.direction is "
                f"{space.direction}")
    wanted = _distributions(optuna, space)
    for ft in storage.get_all_trials(storage.get_study_id_from_name(STUDY_NAME),
                                     deepcopy=False):
        extra = sorted(set(ft.distributions) - set(wanted))
        lacking = sorted(set(wanted) - set(ft.distributions))
        if extra:
            return (f"its trials have parameters ({', '.join(extra)}) that are not in the "
                    "config's search space")
        if lacking and ft.state != optuna.trial.TrialState.RUNNING:
            return (f"its trials lack parameters of the config's search space "
                    f"({', '.join(lacking)})")
        for key, dist in ft.distributions.items():
            if dist != wanted[key]:
                return f"its parameter {key} is {dist}, the config's search space has {wanted[key]}"
    return None


def _recreate(optuna, study, run_dir: Path, cfg: ExperimentConfig) -> None:
    """An empty study in a run whose trials have finished (its optuna.db was lost or moved
    away): tell it each finished trial, in the order they were proposed, with a warning."""
    trials = finished_on_disk(run_dir, cfg)
    if not trials:
        return
    space = cfg.search
    warn(f"{(run_dir / STUDY_FILE).absolute()}: no study holds the {len(trials)} finished "
         "trial(s); it is recreated from their summary.json files (later proposals differ "
         "from the lost study's)")
    distributions = _distributions(optuna, space)
    for trial in trials:
        picks = _picks_from_values(space, trial.values)
        params = {key: (p.position if space.axes[key].is_choice
                        and not _primitive(space.axes[key].values) else p.value)
                  for key, p in picks.items()}
        summary = read_finished(run_dir / trial.name)
        value = objective_value(summary, space)
        if summary.pruned_at_step is not None:  # pruned: its last objective as the pruned value
            study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED, params=params,
                distributions=distributions,
                intermediate_values={summary.pruned_at_step: value}))
            continue
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=value))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _picks_from_values(space: SearchSpace, values: Any) -> dict[str, Pick] | None:
    """A finished trial's values (as its summary.json holds them) as the pick of each swept key;
    None if they are not a point of the space."""
    if not isinstance(values, dict) or set(values) != set(space.axes):
        return None
    picks = {}
    for key, axis in space.axes.items():
        v = values[key]
        if axis.is_choice:
            match = [i for i, c in enumerate(axis.values)
                     if _canonical(group_label(c)) == _canonical(v)]
            if not match:
                return None
            picks[key] = axis.pick(match[0])
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        elif not axis.values[0] <= v <= axis.values[1]:
            return None
        elif axis.kind == "int":
            if v != int(v):
                return None
            picks[key] = Pick(int(v), axis.where, None)
        else:
            picks[key] = Pick(float(v), axis.where, None)
    return picks


@dataclasses.dataclass
class _Replay:
    """Turns the study's trials, in number order, into the run's trials -- the same names every
    time (a name already taken gets ``__<number>``), whether training or reporting."""

    cfg: ExperimentConfig
    seen: set[str] = dataclasses.field(default_factory=set)
    first: dict[tuple, int] = dataclasses.field(default_factory=dict)
    trials: dict[int, Trial | ConfigError] = dataclasses.field(default_factory=dict)

    def trial(self, number: int, params: dict) -> tuple[Trial | ConfigError, int | None]:
        """(the trial of study trial ``number`` -- or the problem that stops its values making
        one --, the number of an earlier trial with the same values or None)."""
        if set(self.cfg.search.axes) - set(params):
            return ConfigError("interrupted before the study stored its values"), None
        picks = picks_from(self.cfg.search, params)
        ident = identity(picks)
        if ident in self.first:
            first = self.first[ident]
            return self.trials[first], first
        self.first[ident] = number
        try:
            self.trials[number] = trial_at(self.cfg, number, picks, self.seen)
        except ConfigError as e:
            self.trials[number] = e
        return self.trials[number], None


def _open(optuna, run_dir: Path, *, create: bool, direction: str | None = None):
    path = (run_dir / STUDY_FILE).absolute()
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        if create:
            return optuna.create_study(storage=storage, study_name=STUDY_NAME,
                                       direction=direction, load_if_exists=True)
        return optuna.load_study(storage=storage, study_name=STUDY_NAME)
    except Exception as e:  # noqa: BLE001 -- sqlalchemy and optuna raise many kinds
        raise RunError(f"{path}: the optuna study cannot be opened ({type(e).__name__}: "
                       f"{one_line(e)[:120]})") from None


def _primitive(values) -> bool:
    """Whether optuna can store the choices themselves (else their positions)."""
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in values)


def _finished(run_dir: Path, trial: Trial) -> TrialSummary | None:
    """The trial's summary; None if unfinished or damaged (then it is trained on)."""
    try:
        return read_finished(run_dir / trial.name)
    except DamagedFile:
        return None


@contextlib.contextmanager
def _quiet(optuna):
    """optuna's per-trial INFO lines off while lstmjax drives the study (the progress display
    reports the trials); the previous verbosity restored afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def objective_value(summary: TrialSummary, space: SearchSpace) -> float:
    """The trial's objective; a missing statistic is the worst value (+-inf)."""
    value = getattr(summary, space.objective)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf if space.direction == "minimize" else -math.inf
    return float(value)


def _distributions(optuna, space: SearchSpace) -> dict:
    d = optuna.distributions
    out = {}
    for key, axis in space.axes.items():
        if axis.is_choice:
            values = axis.values if _primitive(axis.values) else range(len(axis.values))
            out[key] = d.CategoricalDistribution(tuple(values))
        elif axis.kind == "int":
            out[key] = d.IntDistribution(*axis.values)
        else:
            out[key] = d.FloatDistribution(*axis.values, log=axis.kind == "loguniform")
    return out
