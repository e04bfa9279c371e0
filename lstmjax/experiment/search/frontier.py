"""The gap frontier as a search: per variant, probes planned by
:func:`lstmjax.experiment.frontier.plan` from that variant's own outcomes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstmjax.experiment import frontier
from lstmjax.experiment.outcome import seed_outcomes
from lstmjax.experiment.rundir import METRICS_FILE, read_metrics, stored_steps
from lstmjax.experiment.search.result import Replay, SearchResult, read_entry
from lstmjax.experiment.summary import TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["FrontierSearch", "probe"]


def probe(cfg, fc, variant: Trial, gap: int, index: int) -> Trial:
    """The trial of ``variant`` (a trial of the sweep without the frontier key) at ``gap``;
    ``fc``: the frontier settings of ``cfg``."""
    from lstmjax.experiment.schema import ExperimentConfig
    from lstmjax.experiment.sweep import axis_labels, trial_name, with_values

    key = fc.key
    raw = with_values(variant.cfg.model_dump(mode="json"), {key: gap})
    values = {**variant.values, key: gap}
    name = trial_name(values, axis_labels(cfg, (key,)))
    return Trial(index, name, values, ExperimentConfig.model_validate(raw),
                 {**variant.assignment, key: gap}, gap_key=key)


def _budget_of(run_dir: Path | None, trial: Trial, fc) -> Trial:
    """``trial`` with the budget its directory in ``run_dir`` was last given by an extension
    (a resumed run: the search asks for what it asked for before), else as it is."""
    if run_dir is None:
        return trial
    steps = stored_steps(run_dir / trial.name)
    top = fc.max_budget
    if steps is None or top is None or not trial.cfg.train.steps < steps <= top:
        return trial
    return _with_steps(trial, steps)


def _with_steps(trial: Trial, steps: int) -> Trial:
    train = trial.cfg.train.model_copy(update={"steps": steps})
    return dataclasses.replace(trial, cfg=trial.cfg.model_copy(update={"train": train}))


def _boundaries(fc, found: dict, at: dict) -> dict:
    """Per variant name: (its :func:`frontier.boundary`, the steps its smallest unsolved
    probe ended with); ``at``: variant name -> {gap: (seed outcomes, steps, median steps to
    solve if the probe was solved)}."""
    out = {}
    for name, result in found.items():
        probes = at.get(name, {})
        outcomes, steps, _ = probes.get(result.smallest_unsolved, (None, None, None))
        if result.smallest_unsolved is None and result.largest_solved is not None:
            steps = probes.get(result.largest_solved, (None, None, None))[1]
        needed = max((m for g, (_, _, m) in probes.items() if m
                      and (result.smallest_unsolved is None or g < result.smallest_unsolved)),
                     default=None)
        out[name] = (frontier.boundary(fc, result, outcomes, steps, needed), steps)
    return out


def _solved_steps(fc, summary: TrialSummary) -> float | None:
    """A probe's median steps to solve when it counts as solved, else None."""
    if summary.solved_fraction >= fc.min_solved - 1e-12:
        return summary.median_steps_to_solve
    return None


class FrontierSearch:
    """Per variant (process ``rank`` of ``count`` takes every ``count``-th), the next probe
    as soon as the variant's last one is told; a variant whose probe fails stops searching
    (its frontier marked incomplete). The decisions depend only on each variant's own
    outcomes, so the probes are the same whatever order the results come in.

    A probe told unsolved while enough of its seeds are still learning
    (:func:`frontier.could_still_solve`), or after less than a fair budget
    (:func:`frontier.fair_budget`), is asked again with a raised budget
    (:func:`frontier.next_budget`, up to ``frontier.max_budget``) before it counts; its
    directory continues from its checkpoint. ``run_dir``: where a resumed run's probes are
    (each is asked with the budget it was last given)."""

    fixed = False
    streams = True
    width = 1  # (asks every variant's next probe at once; set by the executor)
    size = 0  # decided as it goes

    def __init__(self, cfg, fc, variants: list[Trial], *, rank: int = 0, count: int = 1,
                 run_dir: Path | None = None, resume: bool = False):
        self.cfg, self.fc = cfg, fc
        self.run_dir = run_dir if resume else None
        self._at: dict[str, dict[int, tuple]] = {}  # per gap: outcomes, steps, steps to solve
        self._needed: dict[str, float] = {}  # the most steps a solved probe took, per variant
        self.variants = list(variants)[rank::count]
        self.upfront = tuple(probe(cfg, fc, v, fc.start, 0) for v in variants)
        self.largest = tuple(probe(cfg, fc, v, fc.max, 0) for v in variants)
        self.known: dict[str, dict[int, float]] = {v.name: {} for v in self.variants}
        self.found: dict[str, frontier.FrontierResult] = {}
        self._stopped: set[str] = set()
        self._pending: dict[str, Trial] = {}  # asked trial name -> its variant
        self._again: dict[str, Trial] = {}  # variant name -> a probe asked again (more steps)
        self._probes: dict[str, Trial] = {}  # every probe asked, by name
        self._variant_of: dict[str, Trial] = {}
        self._summaries: dict[str, TrialSummary] = {}
        self._index = 0

    def ask(self) -> list[Trial]:
        busy = {v.name for v in self._pending.values()}
        out = []
        for v in self.variants:
            if v.name in busy or v.name in self._stopped:
                continue
            trial = self._again.pop(v.name, None)
            if trial is None:
                gap, self.found[v.name] = frontier.plan(self.fc, self.known[v.name])
                if gap is None:
                    continue
                trial = _budget_of(self.run_dir, probe(self.cfg, self.fc, v, gap, self._index),
                                   self.fc)
                self._index += 1
            self._pending[trial.name] = v
            self._probes[trial.name] = trial
            self._variant_of[trial.name] = v
            out.append(trial)
        return out

    def tell(self, trial: Trial, summary: TrialSummary | None) -> None:
        v = self._pending.pop(trial.name, None)
        if v is None:
            raise ValueError(f"{trial.name}: told without being asked (or told twice)")
        if summary is None:  # failed: named by the executor
            self._stopped.add(v.name)
            self.found[v.name] = dataclasses.replace(self.found[v.name], complete=False)
            return
        self._summaries.pop(trial.name, None)  # told again (more steps): the newer result
        self._summaries[trial.name] = summary
        outcomes = list(_outcomes(self.run_dir, trial, summary).values())
        self._at.setdefault(v.name, {})[int(trial.gap)] = (
            outcomes, trial.cfg.train.steps, _solved_steps(self.fc, summary))
        tc = trial.cfg.train
        if summary.solved_fraction < self.fc.min_solved - 1e-12:
            fair = frontier.fair_budget(self.fc, self._needed.get(v.name))
            if frontier.could_still_solve(self.fc, outcomes) or (fair and tc.steps < fair):
                steps = frontier.next_budget(self.fc, tc.steps, tc.eval_every)
                if steps is not None:  # trained on before it counts as unsolved
                    self.extend(trial.name, steps)
                    return
        elif summary.median_steps_to_solve:
            self._needed[v.name] = max(self._needed.get(v.name, 0),
                                       summary.median_steps_to_solve)
        self.known[v.name][int(trial.gap)] = summary.solved_fraction

    def extend(self, name: str, steps: int) -> Trial:
        """Ask for the probe ``name`` again with ``train.steps = steps`` (a probe still
        learning when its budget ran out); its variant waits for it, and its result replaces
        the earlier one. Returns the trial that will be asked."""
        trial = self._probes[name]
        variant = self._variant_of[name]
        again = _with_steps(trial, steps)
        self._again[variant.name] = again
        self._probes[name] = again
        return again

    def result(self) -> SearchResult:
        boundaries = _boundaries(self.fc, self.found, self._at)
        return SearchResult(tuple(self._summaries.values()),
                            {"frontier": frontier.rows(self.variants, self.found, boundaries)})

    @staticmethod
    def replay(cfg, fc, variants: list[Trial], run_dir: Path) -> Replay:
        """The search again over the finished probes in ``run_dir``; a probe the search asks
        for that has not finished ends that variant's replay."""
        entries, results, index, at = [], {}, 0, {}
        for variant in variants:
            known: dict[int, float] = {}
            while True:
                gap, results[variant.name] = frontier.plan(fc, known)
                if gap is None:
                    break
                trial = _budget_of(run_dir, probe(cfg, fc, variant, gap, index), fc)
                index += 1
                summary, damage = read_entry(run_dir / trial.name)
                if summary is not None and summary.steps != trial.cfg.train.steps:
                    trial = _with_steps(trial, summary.steps)  # (its final budget)
                entries.append((trial, summary, damage))
                if summary is None:
                    break
                outcomes = list(_outcomes(run_dir, trial, summary).values())
                at.setdefault(variant.name, {})[gap] = (outcomes, summary.steps,
                                                        _solved_steps(fc, summary))
                known[gap] = summary.solved_fraction
        boundaries = _boundaries(fc, results, at)
        return Replay(tuple(entries), fc,
                      {"frontier": frontier.rows(variants, results, boundaries)}, (fc.key,))


def _outcomes(run_dir: Path | None, trial: Trial, summary: TrialSummary) -> dict[int, str]:
    """The seed outcomes of a finished probe: recorded in its summary, or (a summary written
    before they were) read from its metric lines in ``run_dir``."""
    lines = None
    if run_dir is not None and not all(r.outcome for r in summary.per_seed):
        try:
            lines = read_metrics(run_dir / trial.name / METRICS_FILE, strict=False)
        except (OSError, ValueError):
            lines = None
    return seed_outcomes(summary, lines)
