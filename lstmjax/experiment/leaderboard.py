"""A search's leaderboard: the trials of a random or optuna search ranked by its objective, the
best one at the top of ``report.md``, and the objective against each searched parameter
(``plots/objective_vs_parameters.png``).

The objective is the search's (``sweep.objective``, ``sweep.direction``; a random search
without one is ranked by ``solved_fraction``, maximised), computed from each trial's
``summary.json`` exactly as the optuna study is told it
(:func:`~lstmjax.experiment.search.objective_value`: a trial without the statistic -- no seed
solved, every seed diverged -- has the worst value). Order: the trials that ran their budget by
objective, then the pruned ones by objective (their statistics are those they had when the
pruner stopped them, not comparable with a full budget's), ties in the order the search
proposed them; unfinished and failed trials are not ranked.

The plot draws one panel per searched parameter (log x for a ``loguniform`` range, a choice's
values as categories), the objective on y: trials that ran their budget as dots, pruned ones as
crosses, the best as a star; trials whose objective is the worst value (missing statistic) are
left out of the panels and counted in the title. It is drawn with matplotlib from the results,
not with optuna's visualisation: that needs pyplot's global state (the report draws on Agg
figures of its own, thread-safe) and would show only the study, not a recreated study's or a
random search's trials.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

from lstmjax._io import atomic_write_bytes
from lstmjax.experiment.space import OBJECTIVES, SearchSpace
from lstmjax.experiment.stats import wilson_interval
from lstmjax.experiment.sweep import format_value, group_label

__all__ = ["applies", "objective_of", "ranked", "rows", "markdown", "parameter_figure",
           "plots", "finding", "PLOTS", "DEFAULT_OBJECTIVE"]

DEFAULT_OBJECTIVE = "solved_fraction"  # a random search without sweep.objective
PLOTS = ("objective_vs_parameters.png",)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ranked trial: its report dict (``name``, ``values``, ``summary``, ...), its
    objective value and the step a pruner stopped it at (None: it ran its budget)."""

    rank: int
    trial: dict
    value: float
    pruned_at: int | None


def applies(cfg) -> bool:
    """Whether ``cfg`` runs a search that has a leaderboard (random or optuna)."""
    from lstmjax.experiment.search import ranks_by_objective

    return ranks_by_objective(cfg)


def objective_of(cfg) -> SearchSpace:
    """The search space with the objective the leaderboard ranks by filled in."""
    space = cfg.search
    name = space.objective or DEFAULT_OBJECTIVE
    return dataclasses.replace(space, objective=name,
                               direction=space.direction or OBJECTIVES[name])


def ranked(cfg, trials: list[dict]) -> list[Entry]:
    """The finished trials of the report (``trials``: report dicts in the search's order),
    best first (see the module docstring)."""
    from lstmjax.experiment.search.study import objective_value

    space = objective_of(cfg)
    sign = 1.0 if space.direction == "minimize" else -1.0
    found = []
    for order, t in enumerate(trials):
        s = t["summary"]
        if s is None:
            continue
        value = objective_value(s, space)
        found.append(((s.pruned_at_step is not None, sign * value, order), t, value,
                      s.pruned_at_step))
    found.sort(key=lambda f: f[0])
    return [Entry(i + 1, t, v, p) for i, (_, t, v, p) in enumerate(found)]


def rows(cfg, trials: list[dict]) -> list[dict]:
    """The leaderboard as plain rows: ``rank, trial, objective, value, status`` (``complete``
    or ``pruned``), ``values`` (the searched values)."""
    space = objective_of(cfg)
    return [{"rank": e.rank, "trial": e.trial["name"], "objective": space.objective,
             "value": e.value, "status": "complete" if e.pruned_at is None else "pruned",
             "values": dict(e.trial["values"])} for e in ranked(cfg, trials)]


def finding(cfg, trials: list[dict]) -> str:
    """A search's one-sentence finding: its best trial's values and objective, how many trials
    finished (pruned among them) and, for the gap question, how many seeds solved the task."""
    space = objective_of(cfg)
    board = ranked(cfg, trials)
    done = sum(t["summary"] is not None for t in trials)
    if not board:
        return "No trial of the search has finished yet."
    best = board[0]
    s = best.trial["summary"]
    values = ", ".join(f"{k.rsplit('.', 1)[-1]}={_value(v)}"
                       for k, v in best.trial["values"].items())
    pruned = sum(e.pruned_at is not None for e in board)
    solved = sum(e.trial["summary"].solved_seeds for e in board)
    seeds = sum(len(e.trial["summary"].per_seed) for e in board)
    count = (f"{done} of {len(trials)} trials finished" + (f", {pruned} pruned" if pruned else ""))
    gap = (f"no seed of any trial solved {cfg.task.name} at {cfg.task.length}" if not solved
           else f"{solved} of {seeds} seeds over all trials solved {cfg.task.name}")
    from lstmjax.experiment.search import kind

    return (f"On {cfg.task.name} (length {s.length}), the {kind(cfg)} search's best "
            f"trial is {values}: {space.objective} {_number(best.value)} ({space.direction}; "
            f"{s.solved_seeds}/{len(s.per_seed)} seeds solved, 95% CI {_interval(s)}); "
            f"{count}; {gap}.")


def markdown(cfg, trials: list[dict], plot_paths: list[Path], run_dir: Path) -> list[str]:
    """The ``## Best trial`` and ``## Leaderboard`` sections of report.md ([] for a run that
    is not a random or optuna search)."""
    if not applies(cfg):
        return []
    space = objective_of(cfg)
    entries = ranked(cfg, trials)
    keys = list(space.axes)
    better = "lower" if space.direction == "minimize" else "higher"
    unranked = len(trials) - len(entries)
    plot = next((p for p in plot_paths if p.name == PLOTS[0]), None)
    out = []
    if entries and entries[0].pruned_at is None:
        best = entries[0]
        s = best.trial["summary"]
        values = " · ".join(f"`{k}` = {_value(best.trial['values'].get(k))}" for k in keys)
        out += [
            "## Best trial\n",
            f"**{best.trial['name']}**: {space.objective} {_number(best.value)} "
            f"({space.direction}) · solved {s.solved_seeds}/{len(s.per_seed)} "
            f"({_interval(s)}) · median steps to solve {_steps(s.median_steps_to_solve)} · "
            f"trained {_trained(s)} steps\n",
            f"Values: {values}\n",
        ]
    elif not entries:
        out += ["## Best trial\n", "No trial of the search has finished yet.\n"]
    else:
        out += ["## Best trial\n", "Every finished trial was pruned; none ran its budget.\n"]
    how = (f"Trials of the {space.method} search ranked by `{space.objective}` ({better} is "
           "better; a missing statistic counts as the worst value); pruned trials rank below "
           "those that ran their budget")
    if unranked:
        how += f"; {unranked} trial(s) not finished are not ranked"
    if plot is not None:
        how += f". The objective against each parameter: [{plot.name}]" \
               f"({plot.relative_to(run_dir).as_posix()})"
    header = ["rank", "trial", *[f"`{k}`" for k in keys], space.objective, "solved",
              "95% interval", "median steps to solve", "steps", "status"]
    lines = ["| " + " | ".join(header) + " |",
             "|--:|:--|" + "--:|" * len(keys) + "--:|--:|--:|--:|--:|:--|"]
    for e in entries:
        s = e.trial["summary"]
        status = "complete" if e.pruned_at is None else f"pruned at step {e.pruned_at}"
        cells = [str(e.rank), e.trial["name"],
                 *[_value(e.trial["values"].get(k)) for k in keys], _number(e.value),
                 f"{s.solved_seeds}/{len(s.per_seed)}", _interval(s),
                 _steps(s.median_steps_to_solve), _trained(s), status]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    out += ["## Leaderboard\n", how + ".\n", "\n".join(lines) + "\n"]
    return out


def parameter_figure(cfg, trials: list[dict]):
    """The figure of ``plots/objective_vs_parameters.png``: one panel per searched parameter
    (in sweep order), the objective on y."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    space = objective_of(cfg)
    entries = ranked(cfg, trials)
    axes_spec = list(space.axes.values())
    n = len(axes_spec)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols + 0.6, 3.0 * nrows + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(nrows, cols, squeeze=False).ravel()
    for extra in panels[n:]:
        fig.delaxes(extra)
    shown = [e for e in entries if math.isfinite(e.value)]
    best = entries[0] if entries and entries[0].pruned_at is None else None
    ys = [e.value for e in shown]
    log_y = bool(ys) and min(ys) > 0 and max(ys) / min(ys) > 100
    for ax, axis in zip(panels, axes_spec, strict=False):
        if axis.is_choice:
            labels = [_value(v) for v in axis.values]
            where = {lab: i for i, lab in enumerate(labels)}

            def x_of(e, key=axis.key, where=where):
                return where.get(_value(e.trial["values"].get(key)))

            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0,
                          fontsize="small")
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            def x_of(e, key=axis.key):
                v = e.trial["values"].get(key)
                return None if v is None else float(v)

            low, high = axis.values
            if axis.kind == "loguniform":
                ax.set_xscale("log")
                ax.set_xlim(low / 1.2, high * 1.2)  # a margin: points at a bound stay visible
            else:
                pad = 0.04 * (high - low)
                ax.set_xlim(low - pad, high + pad)
        for pruned, style in ((False, dict(marker="o", color="C0", label="ran its budget")),
                              (True, dict(marker="x", color="C3", label="pruned"))):
            pts = [(x_of(e), e.value) for e in shown if (e.pruned_at is not None) == pruned]
            pts = [p for p in pts if p[0] is not None]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=22, alpha=0.8, **style)
        if best is not None and math.isfinite(best.value) and x_of(best) is not None:
            ax.scatter([x_of(best)], [best.value], marker="*", s=160, color="C2", zorder=3,
                       label=f"best: {best.trial['name']}"[:60])
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(axis.key)
        ax.set_ylabel(space.objective)
        ax.grid(alpha=0.3)
    if n and shown:
        panels[0].legend(fontsize="x-small")
    left = len(entries) - len(shown)
    fig.suptitle(f"{cfg.name}: {space.objective} ({space.direction}) by parameter"
                 + (f"; {left} trial(s) without the statistic not drawn" if left else ""),
                 fontsize="medium")
    return fig


def plots(plots_dir: Path, trials: list[dict], cfg) -> list[Path]:
    """Draw :func:`parameter_figure` into ``plots_dir`` for a search with finished trials;
    returns the paths written ([] otherwise)."""
    if not applies(cfg) or not cfg.search.axes or not ranked(cfg, trials):
        return []
    path = Path(plots_dir) / PLOTS[0]
    buf = io.BytesIO()
    parameter_figure(cfg, trials).savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return [path]


def _value(v: Any) -> str:
    return format_value(group_label(v)) if v is not None else "–"


def _number(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "–"


def _steps(x) -> str:
    return "–" if x is None else f"{x:.0f}"


def _trained(s) -> str:
    """Steps the trial trained (its longest-training seed) of its budget: ``400/1000``."""
    trained = max((r.steps_trained for r in s.per_seed), default=0)
    return f"{trained}/{s.steps}"


def _interval(s) -> str:
    lo, hi = wilson_interval(s.solved_seeds, len(s.per_seed))
    return f"{round(100 * lo)}–{round(100 * hi)}%"
