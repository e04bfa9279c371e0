"""What a search returns (:class:`SearchResult`) and what a run directory holds as its search
replays it (:class:`Replay`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lstmjax.experiment.rundir import DamagedFile, read_finished
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["SearchResult", "Replay", "read_entry"]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """``summaries``: the trials' summaries in the search's order (failed ones left out);
    ``extra``: what the search found, as entries of the run summary (``frontier``: the
    ``frontier.csv`` rows; ``best``: an optuna study's best trial)."""

    summaries: tuple[TrialSummary, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Replay:
    """What a run directory holds, as its search would replay it: ``entries`` (trial, its
    summary or None while unfinished, the damage that stopped it being read or None), in the
    search's order; ``frontier``: a frontier's settings (None for other searches);
    ``extra``: what the search found beyond the trials (a frontier's ``frontier.csv`` rows);
    ``keys``: the dotted keys the search sets beyond the sweep (a frontier's key);
    ``sweep``: the expanded sweep it was replayed from (``expand(cfg)``)."""

    entries: tuple[tuple[Trial, TrialSummary | None, str | None], ...]
    frontier: Any = None
    extra: dict = dataclasses.field(default_factory=dict)
    keys: tuple[str, ...] = ()
    sweep: tuple[Trial, ...] = ()

    @property
    def trials(self) -> list[Trial]:
        return [t for t, _, _ in self.entries]

    @property
    def summaries(self) -> list[TrialSummary]:
        return [s for _, s, _ in self.entries if s is not None]


def read_entry(trial_dir: Path) -> tuple[TrialSummary | None, str | None]:
    """(a trial's summary or None while unfinished, None) or (None, why it is damaged)."""
    try:
        return read_finished(trial_dir), None
    except DamagedFile as e:
        return None, str(e)
