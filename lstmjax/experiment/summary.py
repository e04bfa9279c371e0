"""The typed record of a finished trial, written once to ``summary.json`` and read by reports.

Definitions (per seed): *solved* -- the task's criterion held at an evaluation; *steps to
solve* -- the first such evaluation step; *final loss* -- the evaluation loss at the seed's last
evaluation (a diverged seed has none and is counted as not solved); *blew up* -- it did not
diverge, but its final loss exceeds ``train.blowup_factor`` x the chance loss (an optimiser that
ran away without producing NaNs). Trial statistics (solved seeds, medians) are computed here,
once, by :meth:`TrialSummary.build`.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from lstmjax._io import json_safe

__all__ = ["SeedResult", "TrialSummary", "SummaryError"]


class SummaryError(ValueError):
    """A ``summary.json`` that does not hold a trial summary (truncated, edited, another file)."""


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """The outcome of one seed of a trial."""

    seed: int
    solved: bool
    steps_to_solve: int | None
    final_loss: float | None
    final_accuracy: float | None
    diverged: bool
    diverged_step: int | None
    steps_trained: int
    blew_up: bool = False
    # solved | learning | stuck | plateau | diverged (lstmjax.experiment.outcome); None in
    # summaries written before it was recorded (the report then reads it from the curve)
    outcome: str | None = None


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """What a trial produced; ``summary.json`` is :meth:`to_json` of it."""

    trial: str
    index: int
    values: dict[str, Any]
    variant: str
    task: str
    cell: str
    length: int
    chance_loss: float
    loss_type: str
    steps: int
    seeds: list[int]
    per_seed: list[SeedResult]
    # statistics over seeds (computed once, by `build`)
    solved_seeds: int
    solved_fraction: float
    median_steps_to_solve: float | None
    median_final_loss: float | None  # over seeds that did not diverge
    diverged_seeds: int
    blew_up_seeds: int = 0
    # timing (seconds; None where not measured)
    wall_time_s: float | None = None
    compile_s: float | None = None
    first_chunk_s: float | None = None
    seed_steps_per_s: float | None = None
    resumed_from_step: int | None = None
    budget_raised_from: int | None = None  # train.steps before a raised budget continued it
    # an optuna pruner stopped the trial at this step (its statistics are those it had then)
    pruned_at_step: int | None = None
    # length generalisation (eval.lengths): one entry per evaluation length, per-seed lists
    length_eval: list[dict] | None = None

    @classmethod
    def build(cls, per_seed: list[SeedResult], **fields) -> TrialSummary:
        """A summary with its statistics computed from ``per_seed``."""
        steps = [s.steps_to_solve for s in per_seed if s.solved]
        losses = [s.final_loss for s in per_seed if not s.diverged and s.final_loss is not None]
        return cls(
            per_seed=per_seed,
            solved_seeds=len(steps),
            solved_fraction=len(steps) / len(per_seed) if per_seed else 0.0,
            median_steps_to_solve=statistics.median(steps) if steps else None,
            median_final_loss=statistics.median(losses) if losses else None,
            diverged_seeds=sum(s.diverged for s in per_seed),
            blew_up_seeds=sum(s.blew_up for s in per_seed),
            **fields,
        )

    def replace(self, **changes) -> TrialSummary:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """A strict-JSON dict (non-finite numbers as null)."""
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: Any) -> TrialSummary:
        """Read :meth:`to_json`'s dict back; :class:`SummaryError` (one line) if it is not one."""
        if not isinstance(data, dict):
            raise SummaryError(f"expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise SummaryError(f"missing {', '.join(missing)}")
        seed_names = {f.name for f in dataclasses.fields(SeedResult)}
        seed_required = {
            f.name for f in dataclasses.fields(SeedResult) if f.default is dataclasses.MISSING
        }
        per_seed = data["per_seed"]
        if not isinstance(per_seed, list) or not all(
            isinstance(s, dict) and seed_required <= set(s) for s in per_seed
        ):
            raise SummaryError("per_seed is not a list of seed results")
        try:
            seeds = [SeedResult(**{k: s[k] for k in seed_names if k in s}) for s in per_seed]
            return cls(**{**{k: v for k, v in data.items() if k in names}, "per_seed": seeds})
        except TypeError as e:
            raise SummaryError(str(e)) from None
