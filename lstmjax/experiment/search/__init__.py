"""How a run decides what to train: a :class:`Search` is asked for trials and told their results.

    search = for_config(cfg, run_dir, trials=expand(cfg), resume=resume)
    while (asked := search.ask()) or <results pending>:
        ... train the asked trials ...
        search.tell(trial, summary)        # None: the trial failed
    search.result()                        # the summaries, and what the search found

Implementations: :class:`~.grid.GridSearch` (a grid or a random search: every point known at
the start, a process's share of them), :class:`~.frontier.FrontierSearch` (per variant, the
largest gap it solves: :func:`lstmjax.experiment.frontier.plan` as ask/tell) and
:class:`~.optuna.OptunaSearch` (an optuna study, one trial per device at a time, pruned
on evaluation chunks by ``sweep.pruner``). The executor
(:mod:`lstmjax.experiment.executor`) trains what is asked and never asks which search it has:
:func:`for_config`, :func:`replay` and :func:`kind` are the only places that read a config's
search method.
:func:`replay` answers "which trials does this run directory hold?" for the report, the
diagnostics, the memory pre-flight and process 0's gathering of a multi-process run.

A search may ask for a trial again with more steps (``train.steps`` raised; same name): its
directory then continues from the checkpoint (see :meth:`~.frontier.FrontierSearch.extend`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.search.frontier import FrontierSearch, probe
from lstmjax.experiment.search.grid import GridSearch, share
from lstmjax.experiment.search.optuna import (
    STUDY_FILE,
    STUDY_NAME,
    OptunaSearch,
    _Replay,
    check_study,
    collect,
    finished_on_disk,
    objective_value,
    picks_from,
    run_optuna,
)
from lstmjax.experiment.search.result import Replay, SearchResult, read_entry
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial, expand

__all__ = [
    "Search", "SearchResult", "Replay", "for_config", "replay", "kind", "ranks_by_objective",
    "GridSearch", "FrontierSearch", "OptunaSearch", "share", "probe",
    # the optuna module's names, as when this was that module
    "STUDY_FILE", "STUDY_NAME", "run_optuna", "check_study", "collect", "finished_on_disk",
    "objective_value", "picks_from",
]  # fmt: skip

_Replay = _Replay  # (kept importable from here: tests replay a study's names)


class Search(Protocol):
    """What the executor needs of a search.

    ``upfront``: the trials known before training (their dtypes, memory and batch sizes are
    checked before anything is written); ``largest``: the trials that bound the run's memory.
    ``fixed``: True when ``upfront`` is exactly what will be trained (their directories are
    then checked with the run's before anything is written). ``size``: how many trials, for
    progress (0: not known in advance). ``streams``: on several devices, each asked trial
    trains alone on one device and the search is asked again as soon as any one finishes
    (otherwise each asked batch is scheduled as a whole). ``width``: how many trials train at
    once, set by the executor before its first ask (a search may ask for that many). Optional
    ``watch(trial, step, metric lines) -> bool``: called after each evaluation chunk of a
    trial; True stops it there (pruned, :attr:`TrialSummary.pruned_at_step`)."""

    upfront: tuple[Trial, ...]
    largest: tuple[Trial, ...]
    fixed: bool
    size: int
    streams: bool
    width: int

    def ask(self) -> list[Trial]:
        """Trials to train now; [] while waiting for results -- done when nothing is pending."""

    def tell(self, trial: Trial, summary: TrialSummary | None) -> None:
        """The result of an asked trial (None: it failed), once per ask."""

    def result(self) -> SearchResult:
        """The summaries of the trials (in the order of the search) and what it found."""


def for_config(cfg: ExperimentConfig, run_dir: Path | None = None, *,
               trials: list[Trial] | None = None, resume: bool = False, rank: int = 0,
               count: int = 1, note=None) -> Search:
    """The search of ``cfg`` for process ``rank`` of ``count``, training into ``run_dir``
    (None: only to size the run). ``trials``: ``expand(cfg)`` when the caller has it (a
    frontier's variants, an optuna search's probe points). ``note(text)``: progress notes."""
    trials = expand(cfg) if trials is None else trials
    kind = _kind(cfg)
    if kind == "optuna":
        return OptunaSearch(cfg, run_dir, trials, resume=resume, count=count, note=note)
    if kind == "frontier":
        return FrontierSearch(cfg, cfg.frontier, trials, rank=rank, count=count,
                              run_dir=run_dir, resume=resume)
    return GridSearch(trials, rank=rank, count=count)


def replay(cfg: ExperimentConfig, run_dir: Path, trials: list[Trial] | None = None) -> Replay:
    """The trials of the run in ``run_dir`` whose config is ``cfg`` (``trials``: ``expand(cfg)``
    if the caller has it), each with its summary if it finished."""
    run_dir = Path(run_dir)
    trials = expand(cfg) if trials is None else trials
    kind = _kind(cfg)
    if kind == "frontier":
        found = FrontierSearch.replay(cfg, cfg.frontier, trials, run_dir)
        return dataclasses.replace(found, sweep=tuple(trials))
    held = collect(run_dir, cfg) if kind == "optuna" else trials
    return Replay(tuple((t, *read_entry(run_dir / t.name)) for t in held), sweep=tuple(trials))


def ranks_by_objective(cfg: ExperimentConfig) -> bool:
    """Whether ``cfg``'s search ranks its trials by an objective: a random or optuna search
    (the report's leaderboard, :mod:`lstmjax.experiment.leaderboard`)."""
    return kind(cfg) in ("random", "optuna")


def kind(cfg: ExperimentConfig) -> str:
    """The one reading of a config's search method: ``grid``, ``random``, ``frontier`` or
    ``optuna``."""
    return "frontier" if cfg.frontier is not None else cfg.search.method


def _kind(cfg: ExperimentConfig) -> str:
    """:func:`kind`, a random search counted as a grid (every point known at the start)."""
    found = kind(cfg)
    return "grid" if found == "random" else found
