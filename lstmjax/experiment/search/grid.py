"""A grid or random search: every trial is known before training starts."""

from __future__ import annotations

from lstmjax.experiment.schedule import make_jobs
from lstmjax.experiment.search.result import SearchResult
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["GridSearch", "share"]


def share(trials: list[Trial], rank: int, count: int) -> list[Trial]:
    """Process ``rank``'s share of ``trials``: every ``count``-th job (so a learning-rate
    group stays in one process), finished trials included (they are read back)."""
    if count == 1:
        return list(trials)
    mine = {t.name for i, job in enumerate(make_jobs(trials, {})) if i % count == rank
            for t in job.trials}
    return [t for t in trials if t.name in mine]


class GridSearch:
    """The points of a grid (or the draws of a random search), all asked at once: process
    ``rank`` of ``count`` asks for its :func:`share`."""

    fixed = True
    streams = False
    width = 1  # (asks everything at once; set by the executor)

    def __init__(self, trials: list[Trial], *, rank: int = 0, count: int = 1):
        self.upfront = self.largest = tuple(trials)
        self.size = len(trials)
        self.mine = share(trials, rank, count)
        self._names = {t.name for t in self.mine}
        self._asked = False
        self._told: dict[str, TrialSummary | None] = {}

    def ask(self) -> list[Trial]:
        if self._asked:
            return []
        self._asked = True
        return list(self.mine)

    def tell(self, trial: Trial, summary: TrialSummary | None) -> None:
        if trial.name in self._told or trial.name not in self._names:
            raise ValueError(f"{trial.name}: told without being asked (or told twice)")
        self._told[trial.name] = summary

    def result(self) -> SearchResult:
        return SearchResult(tuple(s for t in self.mine
                                  if (s := self._told.get(t.name)) is not None))
