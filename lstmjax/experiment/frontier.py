"""The gap frontier: per variant, the largest gap it solves, found by search instead of a grid.

    frontier: {key: task.length, start: 5, max: 2000, factor: 2, resolution: 0.1, min_solved: 0.5}
    sweep:    {model.cell: [rnn, lstm, gru]}      # the variants; any other sweep axes allowed

Per variant the search probes gaps ``start, start·factor, …`` (rounded up, at most ``max``)
until a probe is *unsolved* -- fewer than ``min_solved`` of its seeds solved -- or ``max`` is
solved; then it bisects (geometrically) between the last solved and the first unsolved gap until
``(hi - lo) / lo <= resolution`` (or they are adjacent integers). Each probe is an ordinary trial
(seeds vmapped, checkpointed, resumable). :func:`plan` is a pure function of the outcomes known
so far, so a resumed run re-uses finished probes and makes the same decisions. The search as a
run trains it (ask for probes, be told their outcomes) is
:class:`lstmjax.experiment.search.FrontierSearch`.

A probe is only *unsolved* once its budget is spent, and a fair one: it is trained on from
its checkpoint with ``train.steps x budget_factor`` steps, up to ``max_budget``
(:func:`next_budget`), while enough of its seeds are still ``learning``
(:mod:`lstmjax.experiment.outcome`) that they could lift it to ``min_solved``, and while its
budget is below :data:`SPARE` times the steps the variant needed at the gaps it solved
(:func:`fair_budget`: a flat loss after fewer steps than a shorter gap took to solve is not
evidence -- on long-gap tasks a loss often sits on a plateau before it drops). Each variant's
frontier then ends in one of three ways (:func:`boundary`): ``not_reached`` (``max``
solved), ``stuck`` (at the smallest unsolved gap too few seeds were still learning to solve
it, after a fair budget: the cell does not bridge that gap) or ``budget_limited`` (enough
were still learning when ``max_budget`` ran out, or ``max_budget`` stopped it short of a fair
budget: more steps might solve it).

Assumes that solving is monotone in the gap (what is solved at a gap is solved at shorter ones);
where it is not, the search reports one transition it found, and the probes show the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence

__all__ = ["FrontierResult", "BOUNDARIES", "SPARE", "plan", "search", "rows",
           "could_still_solve", "fair_budget", "next_budget", "boundary", "max_probes", "rule"]

BOUNDARIES = ("stuck", "budget_limited", "not_reached")
SPARE = 2.0  # a fair budget: this many times the steps the variant needed at its solved gaps


@dataclasses.dataclass(frozen=True)
class FrontierResult:
    """A variant's frontier: ``largest_solved`` (None when not even ``start`` is solved),
    ``smallest_unsolved`` (None when ``max`` is solved), the ``probes`` in the order the search
    made them, and whether the search is ``complete``."""

    largest_solved: int | None
    smallest_unsolved: int | None
    probes: tuple[int, ...]
    complete: bool = True


def plan(fc, known: Mapping[int, float]) -> tuple[int | None, FrontierResult]:
    """``(next gap to probe or None, the frontier as far as known)`` for frontier settings ``fc``
    (``start, max, factor, resolution, min_solved``) and ``known``: gap -> solved fraction."""
    probes: list[int] = []
    solved = lambda g: known[g] >= fc.min_solved - 1e-12  # noqa: E731
    gap, last_solved = fc.start, None
    while True:
        if gap not in known:
            return gap, FrontierResult(last_solved, None, tuple(probes), complete=False)
        probes.append(gap)
        if not solved(gap):
            break
        last_solved = gap
        if gap >= fc.max:
            return None, FrontierResult(gap, None, tuple(probes))
        gap = min(max(gap + 1, math.ceil(gap * fc.factor)), fc.max)
    if last_solved is None:
        return None, FrontierResult(None, gap, tuple(probes))
    lo, hi = last_solved, gap
    while hi - lo > 1 and (hi - lo) / lo > fc.resolution:
        mid = min(max(round(math.sqrt(lo * hi)), lo + 1), hi - 1)
        if mid not in known:
            return mid, FrontierResult(lo, hi, tuple(probes), complete=False)
        probes.append(mid)
        if solved(mid):
            lo = mid
        else:
            hi = mid
    return None, FrontierResult(lo, hi, tuple(probes))


def _ladder(fc) -> list[int]:
    """The gaps :func:`plan` probes while every probe is solved: ``start``, then x ``factor``
    (rounded up, at least one more), up to ``max``."""
    gaps = [fc.start]
    while gaps[-1] < fc.max:
        gaps.append(min(max(gaps[-1] + 1, math.ceil(gaps[-1] * fc.factor)), fc.max))
    return gaps


def max_probes(fc) -> int:
    """The most probes :func:`plan` makes for one variant, whatever their outcomes: the growth
    phase up to the first unsolved gap, then the longest bisection of its interval."""

    @functools.cache
    def bisections(lo: int, hi: int) -> int:
        if not (hi - lo > 1 and (hi - lo) / lo > fc.resolution):
            return 0
        mid = min(max(round(math.sqrt(lo * hi)), lo + 1), hi - 1)
        return 1 + max(bisections(lo, mid), bisections(mid, hi))

    gaps = _ladder(fc)
    return max([len(gaps)] + [k + 1 + bisections(gaps[k - 1], gaps[k])
                              for k in range(1, len(gaps))])


def rule(fc, seeds: int | None = None) -> str:
    """How :func:`plan` chooses the probes after the first, in words."""
    need = f"{fc.min_solved:.0%} of its seeds" if seeds is None else (
        f"{math.ceil(fc.min_solved * seeds - 1e-12)} of its {seeds} seeds")
    return (f"probe {fc.key} = {fc.start}, then x{fc.factor:g} (rounded up, at most {fc.max}: "
            f"{' '.join(map(str, _ladder(fc)))}) while each probe is solved (at least {need} "
            f"solve it); after the first unsolved probe, bisect geometrically between the last "
            f"solved and the first unsolved gap until (hi - lo) / lo <= {fc.resolution:g}"
            + _budget_rule(fc))


def _budget_rule(fc) -> str:
    top = getattr(fc, "max_budget", None)
    if top is None:
        return ""
    return (f"; a probe left unsolved while enough of its seeds are still learning, or after "
            f"fewer than {SPARE:g}x the steps a solved gap took, is trained on (train.steps "
            f"x{fc.budget_factor:g}, up to {top} steps) before it counts")


def search(fc, outcome) -> FrontierResult:
    """Run the whole search with ``outcome(gap) -> solved fraction`` (e.g. a fake trial)."""
    known: dict[int, float] = {}
    while True:
        gap, result = plan(fc, known)
        if gap is None:
            return result
        known[gap] = outcome(gap)


def could_still_solve(fc, outcomes: Sequence[str]) -> bool:
    """Whether the seeds of an unsolved probe that were still ``learning`` could, by solving,
    lift it to ``min_solved`` (``outcomes``: one per seed)."""
    if not outcomes:
        return False
    learning = sum(o == "learning" for o in outcomes)
    solved = sum(o == "solved" for o in outcomes)
    return learning > 0 and (solved + learning) / len(outcomes) >= fc.min_solved - 1e-12


def fair_budget(fc, needed: float | None) -> int | None:
    """The budget an unsolved probe gets even when no seed is still learning: :data:`SPARE`
    times ``needed`` (the most steps the variant took to solve a gap so far: the largest
    median steps to solve of its solved probes), at most ``max_budget``; None without
    ``max_budget`` or a solved gap."""
    top = getattr(fc, "max_budget", None)
    if top is None or not needed:
        return None
    return min(top, math.ceil(SPARE * needed))


def next_budget(fc, steps: int, eval_every: int) -> int | None:
    """The budget an unsolved probe trained for ``steps`` is extended to: ``steps x
    budget_factor`` rounded up to whole chunks of ``eval_every``, at most ``max_budget``;
    None when ``max_budget`` is not set or already reached."""
    top = getattr(fc, "max_budget", None)
    if top is None or steps >= top:
        return None
    raised = math.ceil(steps * fc.budget_factor / eval_every) * eval_every
    return max(min(raised, top), steps + 1)


def boundary(fc, result: FrontierResult, outcomes: Sequence[str] | None,
             steps: int | None = None, needed: float | None = None) -> str | None:
    """How a variant's frontier ends (:data:`BOUNDARIES`): ``not_reached`` when ``max`` is
    solved; else, from the seed ``outcomes`` of its smallest unsolved probe (after any budget
    extension, ``steps`` its final budget): ``budget_limited`` if they
    :func:`could_still_solve` it, or if that budget was below :data:`SPARE` times ``needed``
    (the most steps the variant took at a gap it solved: ``max_budget`` cut the probe short
    of a fair budget, so its flat seeds are no evidence); else ``stuck``. None while the
    search is incomplete or the outcomes are unknown."""
    if not result.complete:
        return None
    if result.smallest_unsolved is None:
        return "not_reached" if result.largest_solved is not None else None
    if outcomes is None:
        return None
    if could_still_solve(fc, outcomes):
        return "budget_limited"
    if steps is not None and needed and steps < SPARE * needed:
        return "budget_limited"
    return "stuck"


def rows(variants, results: dict[str, FrontierResult],
         boundaries: Mapping[str, tuple[str | None, int | None]] | None = None) -> list[dict]:
    """``frontier.csv`` rows: variant, largest_solved, smallest_unsolved, probes, probed,
    complete, boundary and budget (``boundaries``: variant name -> (its :func:`boundary`, the
    train.steps its smallest unsolved probe ended with))."""
    boundaries = boundaries or {}
    return [
        {
            "variant": v.variant,
            "largest_solved": results[v.name].largest_solved,
            "smallest_unsolved": results[v.name].smallest_unsolved,
            "probes": len(results[v.name].probes),
            "probed": " ".join(str(g) for g in sorted(results[v.name].probes)),
            "complete": results[v.name].complete,
            "boundary": boundaries.get(v.name, (None, None))[0],
            "budget": boundaries.get(v.name, (None, None))[1],
        }
        for v in variants
    ]
