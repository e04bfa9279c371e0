"""Pruning an optuna trial on its evaluation chunks: the pruner of ``sweep.pruner``
(:func:`make_pruner`) and the objective of a trial so far (:func:`interim_value`), the value
each chunk reports to the study (``trial.report(value, step)``, ``step`` the training step)."""

from __future__ import annotations

from lstmjax.experiment.space import SearchSpace
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import Trial

__all__ = ["make_pruner", "interim_value", "interim_summary"]


def make_pruner(optuna, space: SearchSpace):
    """The optuna pruner of ``space.pruner`` with its settings (``none``: optuna's NopPruner)."""
    settings = dict(space.pruner_settings)
    p = optuna.pruners
    if space.pruner == "median":
        return p.MedianPruner(**settings)
    if space.pruner == "successive_halving":
        return p.SuccessiveHalvingPruner(**settings)
    if space.pruner == "hyperband":
        return p.HyperbandPruner(**settings)
    return p.NopPruner()


def interim_summary(trial: Trial, lines: list[dict], step: int) -> TrialSummary:
    """The trial's summary as it would be if it stopped now, from its metric lines so far (per
    seed: solved at its first line that says so, its last evaluation loss, diverged if a line
    says so) -- the statistics of :meth:`TrialSummary.build`, so the objective is defined as
    at the end of training."""
    tc = trial.cfg.train
    per_seed = []
    for seed in tc.seeds:
        mine = [m for m in lines if m.get("seed") == seed]
        solved_at = next((m["step"] for m in mine if m.get("solved")), None)
        diverged_at = next((m["step"] for m in mine if m.get("diverged")), None)
        last = mine[-1] if mine else {}
        ratio = last.get("loss_vs_chance")
        blew_up = (tc.blowup_factor is not None and diverged_at is None and ratio is not None
                   and ratio > tc.blowup_factor)
        per_seed.append(SeedResult(
            seed=seed, solved=solved_at is not None, steps_to_solve=solved_at,
            final_loss=last.get("loss"), final_accuracy=last.get("accuracy"),
            diverged=diverged_at is not None, diverged_step=diverged_at,
            steps_trained=int(last.get("updates") or step), blew_up=blew_up))
    cfg = trial.cfg
    return TrialSummary.build(
        per_seed, trial=trial.name, index=trial.index, values=trial.values,
        variant=trial.variant, task=cfg.task.name, cell=cfg.model.cell, length=cfg.task.length,
        chance_loss=float("nan"), loss_type="", steps=tc.steps, seeds=list(tc.seeds))


def interim_value(trial: Trial, lines: list[dict], step: int, space: SearchSpace) -> float:
    """The search's objective of the trial so far (a missing statistic is the worst value)."""
    from lstmjax.experiment.search.study import objective_value

    return objective_value(interim_summary(trial, lines, step), space)
