"""The gap frontier as a search: per variant, probes planned by
:func:`lstmjax.experiment.frontier.plan` from that variant's own outcomes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lstmjax.experiment import frontier
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


class FrontierSearch:
    """Per variant (process ``rank`` of ``count`` takes every ``count``-th), the next probe
    as soon as the variant's last one is told; a variant whose probe fails stops searching
    (its frontier marked incomplete). The decisions depend only on each variant's own
    outcomes, so the probes are the same whatever order the results come in."""

    fixed = False
    streams = True
    width = 1  # (asks every variant's next probe at once; set by the executor)
    size = 0  # decided as it goes

    def __init__(self, cfg, fc, variants: list[Trial], *, rank: int = 0, count: int = 1):
        self.cfg, self.fc = cfg, fc
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
                trial = probe(self.cfg, self.fc, v, gap, self._index)
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
        self.known[v.name][int(trial.gap)] = summary.solved_fraction
        self._summaries.pop(trial.name, None)  # told again (more steps): the newer result
        self._summaries[trial.name] = summary

    def extend(self, name: str, steps: int) -> Trial:
        """Ask for the probe ``name`` again with ``train.steps = steps`` (a probe still
        learning when its budget ran out); its variant waits for it, and its result replaces
        the earlier one. Returns the trial that will be asked."""
        trial = self._probes[name]
        variant = self._variant_of[name]
        train = trial.cfg.train.model_copy(update={"steps": steps})
        again = dataclasses.replace(trial, cfg=trial.cfg.model_copy(update={"train": train}))
        self._again[variant.name] = again
        return again

    def result(self) -> SearchResult:
        return SearchResult(tuple(self._summaries.values()),
                            {"frontier": frontier.rows(self.variants, self.found)})

    @staticmethod
    def replay(cfg, fc, variants: list[Trial], run_dir: Path) -> Replay:
        """The search again over the finished probes in ``run_dir``; a probe the search asks
        for that has not finished ends that variant's replay."""
        entries, results, index = [], {}, 0
        for variant in variants:
            known: dict[int, float] = {}
            while True:
                gap, results[variant.name] = frontier.plan(fc, known)
                if gap is None:
                    break
                trial = probe(cfg, fc, variant, gap, index)
                index += 1
                summary, damage = read_entry(run_dir / trial.name)
                entries.append((trial, summary, damage))
                if summary is None:
                    break
                known[gap] = summary.solved_fraction
        return Replay(tuple(entries), fc, {"frontier": frontier.rows(variants, results)},
                      (fc.key,))
