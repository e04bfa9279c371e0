"""What became of a seed: ``solved``, ``learning``, ``stuck``, ``plateau`` or ``diverged``.

A seed that did not solve its task within its budget is not yet evidence that the cell cannot
bridge the gap: it may still have been learning when the steps ran out. The rule reads the
seed's evaluation curve (eval loss at each evaluation step) and says which:

* ``diverged``: the loss became non-finite (training stopped it), whatever came before;
* ``solved``: the task's criterion held at an evaluation;
* ``learning``: unsolved, and the loss was still falling at the end of the budget: over the
  last :data:`WINDOW` fraction of the evaluations (at least :data:`MIN_POINTS` of them), the
  least-squares slope of ``log(loss)`` against the step is negative with a t-statistic below
  ``-T_CRITICAL`` (one-sided; a flat noisy curve passes it about 0.5 % of the time), the
  fitted line falls by more than :data:`MIN_DROP` over that window, and the slope over the
  last quarter alone is still negative (a curve that fell and then flattened is not learning);
* ``stuck``: unsolved, not falling, and the loss (median over the window) is at least
  :data:`NEAR_CHANCE` x the chance loss -- the cell found nothing better than ignoring its
  input;
* ``plateau``: unsolved, not falling, below that -- it learned part of the task and stopped.

With fewer than :data:`MIN_POINTS` evaluations no slope is fitted: the seed counts as
``learning`` if its last loss is below ``1 - MIN_DROP`` times its first, else by level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["OUTCOMES", "classify", "log_loss_trend", "eval_curves", "seed_outcomes"]

# (+ "pruned": a seed of a trial stopped by a search's pruner, unsolved and not diverged --
# set by the report from the trial's summary, not by classify)
OUTCOMES = ("solved", "learning", "stuck", "plateau", "diverged", "pruned")
WINDOW = 0.5  # the last half of the evaluations: a shorter window is at the mercy of noise
MIN_POINTS = 4  # evaluations in the window, at least
T_CRITICAL = 3.0  # one-sided: 0.55 % of flat log-normal noise curves pass (25 evaluations)
MIN_DROP = 0.05  # the fitted loss falls by more than 5 % over the window
NEAR_CHANCE = 0.9  # a flat loss at >= 90 % of chance is "stuck"


def log_loss_trend(steps: Sequence[int], losses: Sequence[float]) -> tuple[float, float]:
    """``(slope, t)`` of the least-squares line through ``(step, log(loss))``: the slope per
    step and its t-statistic (``-inf`` for a perfect fall, 0 when the points are flat or too
    few to tell)."""
    x = np.asarray(steps, np.float64)
    y = np.log(np.asarray(losses, np.float64))
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return 0.0, 0.0
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
    if se == 0.0:
        return slope, 0.0 if slope == 0.0 else math.copysign(math.inf, slope)
    return slope, slope / se


def classify(steps: Sequence[int], losses: Sequence[float | None], chance_loss: float, *,
             solved: bool, diverged: bool) -> str:
    """The outcome of one seed (see the module docstring) from its evaluation curve:
    ``steps`` and ``losses`` of its evaluations in order (None or non-finite where the loss
    was not finite), the task's ``chance_loss``, and whether the seed ``solved`` its task or
    ``diverged``."""
    if diverged or any(v is None or not math.isfinite(v) for v in losses):
        return "diverged"
    if solved:
        return "solved"
    if not losses:
        return "stuck"
    n = len(losses)
    k = max(MIN_POINTS, math.ceil(WINDOW * n))
    tail_steps, tail = list(steps)[-k:], [max(float(v), 1e-30) for v in list(losses)[-k:]]
    if len(tail) >= MIN_POINTS:
        slope, t = log_loss_trend(tail_steps, tail)
        span = tail_steps[-1] - tail_steps[0]
        q = max(3, math.ceil(n / 4))
        last_slope, _ = log_loss_trend(tail_steps[-q:], tail[-q:])
        falling = (t < -T_CRITICAL and math.exp(slope * span) < 1.0 - MIN_DROP
                   and last_slope < 0)
    else:
        falling = tail[-1] < (1.0 - MIN_DROP) * tail[0]
    if falling:
        return "learning"
    level = float(np.median(tail))
    return "stuck" if level >= NEAR_CHANCE * chance_loss else "plateau"


def eval_curves(lines: Sequence[dict]) -> dict[int, tuple[list, list]]:
    """Per seed, ``(steps, losses)`` of its evaluations, from metric lines (those with a
    ``loss``), in order: what :func:`classify` reads."""
    curves: dict[int, tuple[list, list]] = {}
    for line in lines:
        if "loss" in line:
            steps, losses = curves.setdefault(line["seed"], ([], []))
            steps.append(line["step"])
            losses.append(line["loss"])
    return curves


def seed_outcomes(summary, lines: Sequence[dict] | None = None) -> dict[int, str]:
    """Per seed of a finished trial (its :class:`~lstmjax.experiment.summary.TrialSummary`),
    its outcome: as recorded in the summary, or -- for a summary written before outcomes were
    recorded -- classified from its metric ``lines`` (``metrics.jsonl``; None: none read)."""
    if summary.per_seed and all(r.outcome is not None for r in summary.per_seed):
        found = {r.seed: r.outcome for r in summary.per_seed}
    else:
        curves = eval_curves(lines or ())
        found = {r.seed: classify(*curves.get(r.seed, ([], [])), summary.chance_loss,
                                  solved=r.solved, diverged=r.diverged or r.blew_up)
                 for r in summary.per_seed}
    if getattr(summary, "pruned_at_step", None) is not None:  # a search's pruner stopped it
        found = {k: o if o in ("solved", "diverged") else "pruned" for k, o in found.items()}
    return found
