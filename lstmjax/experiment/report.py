"""Reports for a run directory: ``results.csv``, ``report.md`` and ``plots/*.png``.

    lj.experiment.write_report("runs/quickstart")      # also: lstmjax report runs/quickstart

The headline is a *variant x gap* table (variant: the swept values other than ``task.length``):
seeds solved / seeds, median steps to solve and median final loss / chance loss; and the plot of
solved fraction vs gap per variant. Finished trials are read from their ``summary.json`` (a
:class:`~lstmjax.experiment.summary.TrialSummary`, whose statistics the runner computed) and
``metrics.jsonl``; unfinished ones show as ``running``. The definitions of solved, steps to
solve and final loss are in :mod:`lstmjax.experiment.summary`. A run, or a gap frontier's
search, that has not finished is called incomplete in the finding (``frontier.csv``: the
``complete`` column), with the command that resumes it; nothing beyond its finished trials is
claimed. The plots draw at most :data:`MAX_VARIANTS` variants (the best), with all of them in
``plots/all_variants.png``; the tables always list every trial. The "Why" section and the
why-plots (``gradient_flow.png``, ``gates.png``) read the diagnostics at each variant's own
boundary, its largest solved and smallest unsolved gap (:mod:`lstmjax.experiment.why`).

Calling the module, ``lj.experiment.report(run_dir)``, is a deprecated alias of
:func:`write_report`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shlex
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from lstmjax._io import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from lstmjax.experiment import frontier as frontier_rules
from lstmjax.experiment import leaderboard, outcome, search, why
from lstmjax.experiment.effective import option_notes, settings_rows
from lstmjax.experiment.outcome import OUTCOMES
from lstmjax.experiment.rundir import (
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    FRONTIER_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    REPORT_FILE,
    RESULTS_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    DamagedFile,
    RunError,
    check_no_links,
    load_run_config,
    read_diagnostics,
    read_failure,
    read_metrics,
    read_summary,
    warn,
)
from lstmjax.experiment.schema import FrontierConfig
from lstmjax.experiment.stats import growth_law, predicted_steps, quartiles, wilson_interval
from lstmjax.experiment.sweep import GAP_KEY, format_value, swept_keys

__all__ = ["write_report", "collect", "results_rows", "result_columns", "headline_table",
           "RESULT_COLUMNS"]

RESULT_COLUMNS = [
    "trial", "variant", "task", "cell", "length", "seed", "solved", "steps_to_solve",
    "final_loss", "final_accuracy", "chance_loss", "diverged", "diverged_step", "steps_trained",
    "blew_up", "outcome",
]  # fmt: skip

# A report draws in proportion to what a reader can see, not to the run's size: at most
# MAX_VARIANTS variants per figure (lines, or panels of the learning curves) -- the best ones,
# by _ranked_variants -- and all of them summarised in all_variants.png; a learning-curve panel
# draws at most MAX_CURVES gaps (evenly spread; each the median of its seeds with their band);
# the finding names at most MAX_VARIANTS variants. The tables list every trial.
MAX_VARIANTS = 12
MAX_CURVES = 16
MAX_GAPS = 4  # per variant in the length-generalisation plot (one line style each)


def write_report(
    run_dir: str | os.PathLike, *, plots: bool = True, out: str | os.PathLike | None = None,
    cfg=None, trials=None,
) -> dict:
    """Write ``results.csv``, ``report.md`` and (if ``plots``) ``plots/`` for a run directory,
    into the run directory or, with ``out``, into another directory (e.g. for a read-only run).

    A trial whose files are damaged is skipped (named in a warning and in the report); the rest
    are reported. Returns ``{"table": headline markdown, "report": path, "results": path,
    "plots": [paths], "damaged": [messages]}``. ``cfg`` and ``trials``: the run's config
    and its expanded sweep, when the caller has them (``lj.experiment.run`` passes what it
    trained); otherwise both are read from the run directory.
    """
    run_dir = Path(run_dir)
    cfg, trials, found = _collect(run_dir, cfg, trials)
    fc = found.frontier
    dest = Path(os.path.expanduser(os.fspath(out))) if out is not None else run_dir
    _check_destination(run_dir, dest, out is not None)
    rows = results_rows(trials)
    columns = result_columns(cfg, found.keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv(v) for k, v in row.items()})
    try:
        remove_stale_temporaries(dest, RUN_FILES + (FRONTIER_FILE,))
        atomic_write_text(dest / RESULTS_FILE, buf.getvalue())
        frontier_rows = found.extra.get("frontier")
        if frontier_rows is not None:
            frontier_rows = _with_intervals_at_ends(frontier_rows, trials)
            atomic_write_text(dest / FRONTIER_FILE, _frontier_csv(frontier_rows))
        plot_paths = (_plots(dest, trials, cfg, frontier_rows, fc) if plots
                      else _existing_plots(dest))
        table = headline_table(trials)
        found_text = finding(cfg, trials, frontier_rows, run_dir, fc)
        held = (tuple(e[0] for e in found.entries) if leaderboard.applies(cfg)
                else found.sweep)  # a search's settings: of the trials it made
        atomic_write_text(dest / REPORT_FILE, _markdown(cfg, trials, table, plot_paths, dest,
                                                        frontier_rows, found_text, fc, held))
    except OSError as e:
        raise RunError(
            f"{dest}: cannot write the report ({e.strerror or e}); "
            "pass --out DIR to write it elsewhere"
        ) from None
    out = {
        "table": table,
        "finding": found_text,
        "report": str(dest / REPORT_FILE),
        "results": str(dest / RESULTS_FILE),
        "plots": [str(p) for p in plot_paths],
        "damaged": [t["damaged"] for t in trials if t["damaged"]],
    }
    if leaderboard.applies(cfg):
        out["leaderboard"] = leaderboard.rows(cfg, trials)
    if frontier_rows is not None:
        out["frontier"] = frontier_rows
        out["frontier_table"] = frontier_table(frontier_rows, fc)
        out["frontier_csv"] = str(dest / FRONTIER_FILE)
    return out


FRONTIER_COLUMNS = ["variant", "largest_solved", "smallest_unsolved", "boundary", "budget",
                    "probes", "probed", "complete",
                    "largest_solved_fraction", "largest_solved_ci_low", "largest_solved_ci_high",
                    "smallest_unsolved_fraction", "smallest_unsolved_ci_low",
                    "smallest_unsolved_ci_high"]  # fmt: skip


def _with_intervals_at_ends(rows: list[dict], trials: list[dict]) -> list[dict]:
    """The frontier rows with the solved fraction and its 95 % Wilson interval at each
    variant's largest solved and smallest unsolved gap (None where not probed)."""
    by = {(t["variant"], t["gap"]): t["summary"] for t in trials if t["summary"] is not None}
    out = []
    for r in rows:
        r = dict(r)
        for end in ("largest_solved", "smallest_unsolved"):
            s = by.get((r["variant"], r[end]))
            lo, hi = (wilson_interval(s.solved_seeds, len(s.per_seed)) if s is not None
                      else (None, None))
            r[f"{end}_fraction"] = None if s is None else s.solved_fraction
            r[f"{end}_ci_low"], r[f"{end}_ci_high"] = lo, hi
        r.setdefault("boundary", None)
        r.setdefault("budget", None)
        out.append(r)
    return out


def _frontier_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FRONTIER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv(row[k]) for k in FRONTIER_COLUMNS})
    return buf.getvalue()


def frontier_table(rows: list[dict], fc: FrontierConfig) -> str:
    """Markdown: per variant the largest gap solved and the smallest gap not solved, and whether
    its search is complete (an incomplete search's bounds are only what is known so far);
    ``fc``: the frontier's settings."""
    lines = ["| variant | largest gap solved | smallest gap not solved | boundary | budget "
             "(steps) | probes | search |",
             "|:--|--:|--:|:--|--:|--:|:--|"]
    for r in rows:
        largest, smallest = r["largest_solved"], r["smallest_unsolved"]
        if r["complete"]:
            largest = largest if largest is not None else f"< {fc.start}"
            smallest = smallest if smallest is not None else f"> {fc.max} (max)"
            state = "complete"
        else:  # nothing is claimed beyond the probes that finished
            largest = largest if largest is not None else "–"
            smallest = smallest if smallest is not None else "–"
            state = "incomplete"
        largest = f"{largest}{_end_interval(r, 'largest_solved')}"
        smallest = f"{smallest}{_end_interval(r, 'smallest_unsolved')}"
        boundary = (r.get("boundary") or "–").replace("_", "-")
        budget = _fmt_steps(r.get("budget")) if r.get("budget") else "–"
        lines.append(f"| {r['variant']} | {largest} | {smallest} | {boundary} | {budget} | "
                     f"{r['probes']} | {state} |")
    return "\n".join(lines) + "\n"


def _end_interval(r: dict, end: str) -> str:
    """`` (3/3 solved, 44–100%)``: the seeds solved at a frontier end and their interval."""
    frac, lo, hi = (r.get(f"{end}_{k}") for k in ("fraction", "ci_low", "ci_high"))
    if frac is None or lo is None:
        return ""
    return f" ({frac:.0%} solved, 95% CI {lo:.0%}–{hi:.0%})"


def finding(cfg, trials: list[dict], frontier_rows: list[dict] | None,
            run_dir: str | os.PathLike | None = None, fc: FrontierConfig | None = None) -> str:
    """One sentence stating the result, generated from the numbers: which variant bridges the
    longest gap, and where the others stop. A run or a frontier search that has not finished
    says so ("incomplete", with the command that resumes it, for ``run_dir``) and claims
    nothing beyond what its finished trials show. ``fc``: a frontier's settings, with its
    rows."""
    if leaderboard.applies(cfg):  # a random or optuna search: its best trial, not a gap
        text = leaderboard.finding(cfg, trials)
        if any(t["summary"] is None for t in trials):
            text += f" The run is incomplete; resume with {_resume_command(run_dir)}."
        return text
    bounds = {r["variant"]: r for r in frontier_rows or ()}
    if frontier_rows is not None:
        per = {r["variant"]: (r["largest_solved"], r["smallest_unsolved"]) for r in frontier_rows}
        running = [r["variant"] for r in frontier_rows if not r["complete"]]
        lo, hi = fc.start, fc.max
        done = sum(r["probes"] for r in frontier_rows)
        note = (f"The search is incomplete: {done} probe{'s' if done != 1 else ''} finished, "
                f"{len(running)} pending (unfinished: {_names(running)}); resume with "
                f"{_resume_command(run_dir)}." if running else "")
        if not done:
            return f"On {cfg.task.name} no probe of the gap frontier has finished yet. {note}"
    else:
        per = why.boundary_gaps(trials)
        running = {t["variant"] for t in trials if t["summary"] is None}
        finished = sum(t["summary"] is not None for t in trials)
        note = (f"The run is incomplete: {finished} of {len(trials)} trials finished; resume "
                f"with {_resume_command(run_dir)}." if running else "")
        gaps = [t["gap"] for t in trials if t["summary"] is not None]
        if not gaps:
            return " ".join(x for x in ("No trial has finished yet.", note) if x)
        lo, hi = min(gaps), max(gaps)
        per = {v: per[v] for v in per if per[v][0] is not None or per[v][1] is not None
               or v not in running}  # a variant with nothing finished says nothing

    def where(v):
        largest, smallest = per[v]
        if v in running and frontier_rows is not None:  # an unfinished search: no verdict
            if largest is None:
                return f"{v} has no finished probe yet"
            if smallest is None:
                return f"{v} solves gaps up to {largest} so far"
            return f"{v} solves gaps up to {largest} so far, not {smallest} (still bisecting)"
        so_far = " so far" if v in running else ""
        row = bounds.get(v)
        if row is not None and row.get("boundary") and v not in running:
            return _at_boundary(v, row, trials, fc)
        if largest is None:
            return f"{v} solves no gap{so_far} (not even {lo})"
        if smallest is None:
            return f"{v} solves every gap up to {largest}{so_far}"
        return f"{v} solves gaps up to {largest} and {_unsolved(v, smallest)}"

    def _unsolved(v, gap) -> str:
        """How the variant's probe at ``gap`` ended, in the outcome words: still learning at
        its budget is a budget effect, not a failure."""
        at = next((t for t in trials if t["variant"] == v and t["gap"] == gap
                   and t["summary"] is not None), None)
        if at is None:
            return f"fails at {gap}"
        outcomes = [o for o in seed_outcomes(at).values() if o != "solved"]
        counts = _outcome_counts(at, unsolved_only=True)
        if outcomes and outcomes.count("learning") * 2 >= len(outcomes):
            return (f"had not solved {gap} when its {at['summary'].steps}-step budget ran out "
                    f"({counts}: a budget limit, not yet a failure)")
        return f"fails at {gap} ({counts})" if counts else f"fails at {gap}"

    ranked = sorted(per, key=lambda v: -1 if per[v][0] is None else per[v][0], reverse=True)
    parts = [where(v) for v in ranked[:MAX_VARIANTS]]  # one sentence, however many variants
    if len(ranked) > MAX_VARIANTS:
        parts.append(f"{len(ranked) - MAX_VARIANTS} more variants in the tables")
    if not ranked or per[ranked[0]][0] is None:
        if not running:
            span = f"gap {lo}" if lo == hi else f"gap from {lo} to {hi}"
            at = [(v, _unsolved(v, per[v][1])) for v in ranked[:MAX_VARIANTS]
                  if per[v][1] is not None]
            how = "; ".join(
                _at_boundary(v, bounds[v], trials, fc).replace(
                    f"{v} solves no gap (not even {fc.start}) and ", f"{v} ")
                if bounds.get(v, {}).get("boundary") else f"{v} {text}" for v, text in at)
            return f"On {cfg.task.name} no variant solves any {span}" + (
                f": {how}." if how else ".")
        head = (f"On {cfg.task.name} no variant has solved a gap yet"
                + (": " + "; ".join(parts) if parts else "") + ".")
        return f"{head} {note}"
    best = [v for v in ranked if per[v][0] == per[ranked[0]][0]]
    lead = (f"{_names(best)} bridge{'s' if len(best) == 1 else ''} the longest gap"
            f" ({per[best[0]][0]})")
    so_far = "so far " if running else ""
    text = f"On {cfg.task.name}, {so_far}{lead}: " + "; ".join(parts) + "."
    hedge = _overlaps(trials, best[0], [v for v in ranked if v not in best], per)
    text = f"{text} {hedge}" if hedge else text
    return f"{text} {note}" if note else text


def _at_boundary(v: str, row: dict, trials: list[dict], fc) -> str:
    """Where a variant's frontier ends, in the words of its ``boundary`` (stuck,
    budget_limited, not_reached) and the evidence behind it."""
    largest, gap, budget = row["largest_solved"], row["smallest_unsolved"], row.get("budget")
    if row["boundary"] == "not_reached":
        nxt = math.ceil(largest * fc.factor)
        need = _predicted(v, nxt, trials)
        cost = (f"; its steps-to-solve trend predicts about {need:,.0f} steps at gap {nxt}"
                if need is not None else "")
        return (f"{v} solves every gap up to {largest}, the search's maximum (its boundary is "
                f"not reached: raise frontier.max to find it{cost})")
    head = (f"{v} solves gaps up to {largest} and" if largest is not None
            else f"{v} solves no gap (not even {fc.start}) and")
    at = next((t for t in trials if t["variant"] == v and t["gap"] == gap
               and t["summary"] is not None), None)
    counts = _outcome_counts(at, unsolved_only=True) if at is not None else ""
    steps = _fmt_steps(budget) if budget else "its"
    took = [(t["summary"].median_steps_to_solve, t["gap"]) for t in trials
            if t["variant"] == v and t["summary"] is not None and t["gap"] < gap
            and t["summary"].solved_fraction >= fc.min_solved - 1e-12
            and t["summary"].median_steps_to_solve]
    fair, floor = "", 0
    if took:
        floor = math.ceil(frontier_rules.SPARE * max(took)[0])  # a budget that can say "stuck"
    if took and budget:
        need, at_gap = max(took)
        fair = f", {budget / need:.1f}x the {_fmt_steps(need)} steps gap {at_gap} took"
    if row["boundary"] == "stuck":
        return (f"{head} is stuck at {gap} ({counts} after {steps} steps{fair}: no longer "
                "learning when the budget ran out)")
    top = getattr(fc, "max_budget", None)
    limit = (f"its maximum budget of {steps} steps" if top is not None and budget
             and budget >= top else f"its {steps}-step budget")
    learning = at is not None and frontier_rules.could_still_solve(
        fc, list(seed_outcomes(at).values()))
    why = ("" if learning else
           f"; after {steps} steps{fair}, too short a budget to call it stuck")
    return (f"{head} had not solved {gap} when {limit} ran out ({counts}{why}: budget-limited, "
            f"not a failure; {_settling(v, gap, budget, trials, top, floor)})")


def _law(v: str, trials: list[dict]) -> dict | None:
    """The variant's :func:`growth_law` of steps to solve against the gap (None: too few
    solved gaps)."""
    pts = _solve_steps(trials).get(v)
    return growth_law([g for g, _ in pts], [n for _, n in pts]) if pts else None


def _predicted(v: str, gap: int, trials: list[dict]) -> float | None:
    """Steps to solve ``gap`` by the variant's growth law (2 significant digits), or None."""
    law = _law(v, trials)
    return None if law is None else float(f"{predicted_steps(law, gap):.2g}")


def _settling(v: str, gap: int, budget: int | None, trials: list[dict], top,
              floor: int = 0) -> str:
    """What budget would settle a budget-limited boundary: the variant's steps-to-solve law
    extrapolated to ``gap`` where it has one (with a margin, and at least ``floor``: a budget
    after which flat seeds count as stuck), else more than what was spent."""
    law = _law(v, trials)
    if law is not None and budget:
        need = _predicted(v, gap, trials)
        if need > budget:
            return (f"its steps-to-solve trend ({law['better']} law, gaps "
                    f"{law['gaps'][0]:g}–{law['gaps'][1]:g}) predicts about {need:,.0f} steps "
                    f"at gap {gap}; frontier.max_budget: {max(math.ceil(need * 1.5), floor):d} "
                    "would settle it")
    more = (f"at least {floor} steps" if budget and floor > budget else
            f"more than {_fmt_steps(budget)} steps" if budget else "more steps")
    key = "frontier.max_budget" if top is not None else "frontier.max_budget (not set)"
    return f"{more} would settle it: raise {key}"


def _overlaps(trials: list[dict], lead: str, others: list[str], per: dict) -> str:
    """Where the leading variant solved a gap another did not, but the two solved fractions'
    95 % Wilson intervals overlap: a sentence saying the seeds cannot tell them apart."""
    by = {(t["variant"], t["gap"]): t["summary"] for t in trials if t["summary"] is not None}
    close = []
    for v in others[:MAX_VARIANTS]:
        gap = per[v][1]
        a, b = by.get((lead, gap)), by.get((v, gap))
        if a is None or b is None:
            continue
        (lo_a, hi_a), (lo_b, hi_b) = (wilson_interval(s.solved_seeds, len(s.per_seed))
                                      for s in (a, b))
        if lo_a <= hi_b and lo_b <= hi_a:
            close.append(f"gap {gap} ({lead} {a.solved_seeds}/{len(a.per_seed)}, {v} "
                         f"{b.solved_seeds}/{len(b.per_seed)} seeds solved)")
    if not close:
        return ""
    seeds = sorted({len(s.per_seed) for s in by.values()})
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return (f"With {n} seeds per probe the 95% intervals still overlap at {'; '.join(close)}: "
            "not distinguishable yet; more seeds would settle it.")


def _names(names: list[str], most: int = 6) -> str:
    """``a and b``; ``a, b, c and d``; past ``most`` names: ``a, ..., f and 60 more``."""
    if len(names) > most:
        return f"{', '.join(names[:most])} and {len(names) - most} more"
    return " and ".join(names) if len(names) <= 2 else (
        f"{', '.join(names[:-1])} and {names[-1]}")


def _resume_command(run_dir) -> str:
    """The command that resumes the run in ``run_dir`` (its own stored config)."""
    if run_dir is None:
        return "`lstmjax run CONFIG --out RUN_DIR --resume`"
    run_dir = os.fspath(run_dir)
    config = shlex.quote(os.path.join(run_dir, CONFIG_FILE))
    return f"`lstmjax run {config} --out {shlex.quote(run_dir)} --resume`"


def _check_destination(run_dir: Path, dest: Path, elsewhere: bool) -> None:
    """The report's files may be written: no links on the way, a writable directory."""
    if not elsewhere:
        check_no_links(run_dir)
    else:
        if dest.exists() and not dest.is_dir():
            raise RunError(f"{dest}: exists and is not a directory")
        for name in (RESULTS_FILE, REPORT_FILE, PLOTS_DIR):
            if (dest / name).is_symlink():
                raise RunError(f"{dest / name}: is a symbolic link; lstmjax does not write "
                               "through links (remove it or choose another --out)")
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"{dest}: cannot create it ({e.strerror or e})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        hint = "choose another --out" if elsewhere else "pass --out DIR to write it elsewhere"
        raise RunError(f"{dest}: is not writable (read-only?); {hint}")


def collect(run_dir: Path):
    """(run config, one dict per trial: name, variant, gap, values, assignment, cell, task,
    summary -- a :class:`TrialSummary` or None while unfinished --, metrics lines, damaged)."""
    cfg, trials, _ = _collect(Path(run_dir))
    return cfg, trials


def collect_with_columns(run_dir: Path):
    """:func:`collect` and the run's :func:`result_columns`."""
    cfg, trials, found = _collect(Path(run_dir))
    return cfg, trials, result_columns(cfg, found.keys)


def _collect(run_dir: Path, cfg=None, trials=None):
    """(config, trial dicts, the :class:`~lstmjax.experiment.search.Replay` of the run)."""
    if cfg is None or trials is None:  # reading needs no registered cell
        cfg, trials = load_run_config(run_dir, registered=False), None
    found = search.replay(cfg, run_dir, trials)
    out = []
    for trial, _, damage in found.entries:
        tdir = run_dir / trial.name
        summary, metrics, damaged = None, [], damage
        if damaged is None:
            try:
                summary = read_summary(tdir / SUMMARY_FILE)
                metrics = read_metrics(tdir / METRICS_FILE)
            except DamagedFile as e:
                summary, metrics, damaged = None, [], str(e)
        if damaged:
            warn(f"{damaged}; trial {trial.name} is left out of the report")
        out.append({
            "name": trial.name,
            "variant": trial.variant,
            "gap": trial.gap,
            "values": trial.values,
            "assignment": trial.assignment,
            "cell": trial.cfg.model.cell,
            "task": trial.cfg.task.name,
            "summary": summary,
            "metrics": metrics,
            "damaged": damaged,
            "failed": None if summary is not None else read_failure(tdir),
            "diagnostics": read_diagnostics(tdir / DIAGNOSTICS_FILE) if summary else [],
            "config": trial.cfg,
        })
    return cfg, out, found


def result_columns(cfg, keys: tuple[str, ...] = ()) -> list[str]:
    """results.csv's columns: :data:`RESULT_COLUMNS`, then the swept keys and ``keys`` (those
    the search sets beyond the sweep: a frontier's key, ``search.Replay.keys``) other than
    ``model.cell`` and ``task.length`` (the ``cell`` and ``length`` columns)."""
    return RESULT_COLUMNS + [k for k in swept_keys(cfg) + list(keys)
                             if k not in ("model.cell", GAP_KEY)]


def seed_outcomes(t: dict) -> dict[int, str]:
    """Per seed of a finished trial, what became of it (:mod:`lstmjax.experiment.outcome`:
    solved, learning, stuck, plateau, diverged): recorded in its summary, or read from its
    evaluation curve for a summary written before outcomes were recorded."""
    return outcome.seed_outcomes(t["summary"], t["metrics"])


def _outcome_counts(t: dict, unsolved_only: bool = False) -> str:
    """``2 learning, 1 stuck``: the trial's seed outcomes, most common first."""
    found = [o for o in seed_outcomes(t).values() if not (unsolved_only and o == "solved")]
    counts = sorted(((found.count(o), o) for o in OUTCOMES if o in found),
                    key=lambda c: (-c[0], OUTCOMES.index(c[1])))
    return ", ".join(f"{n} {o}" for n, o in counts)


def results_rows(trials: list[dict]) -> list[dict]:
    """One row per (finished trial, seed) with :data:`RESULT_COLUMNS` and the swept keys."""
    rows = []
    for t in trials:
        s = t["summary"]
        if s is None:
            continue
        outcomes = seed_outcomes(t)
        for seed in s.per_seed:
            row = {
                "trial": t["name"], "variant": t["variant"], "task": s.task,
                "cell": s.cell, "length": s.length, "chance_loss": s.chance_loss,
            }  # fmt: skip
            row.update({k: getattr(seed, k) for k in RESULT_COLUMNS if hasattr(seed, k)})
            row["outcome"] = outcomes[seed.seed]
            row.update({k: v for k, v in t["assignment"].items()
                        if k not in ("model.cell", GAP_KEY)})
            rows.append(row)
    return rows


def headline_table(trials: list[dict]) -> str:
    """Markdown: one row per variant, one column per gap; each entry
    ``solved/seeds (95 % Wilson interval of the solved fraction) · median steps to solve ·
    median final loss ÷ chance``."""
    variants = list(dict.fromkeys(t["variant"] for t in trials))
    gaps = sorted(set(t["gap"] for t in trials))
    by_key = {(t["variant"], t["gap"]): t for t in trials}
    lines = [
        "| variant | " + " | ".join(f"gap {g}" for g in gaps) + " |",
        "|:--" + "|:--" * len(gaps) + "|",
    ]
    for v in variants:
        cells = []
        for g in gaps:
            t = by_key.get((v, g))
            cells.append(_entry(t) if t is not None else "")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _entry(t: dict) -> str:
    if t["damaged"]:
        return "damaged"
    if t["summary"] is None:
        return "failed" if t.get("failed") else "running"
    s = t["summary"]
    steps = _fmt_steps(s.median_steps_to_solve)
    if s.median_final_loss is None:
        ratio = "diverged" if s.diverged_seeds else "–"
    else:
        r = s.median_final_loss / s.chance_loss
        ratio = f"{r:.2f}" if r < 1e4 else f"{r:.3g}"
    blew = f" · {s.blew_up_seeds} blew up" if s.blew_up_seeds else ""
    return f"{s.solved_seeds}/{len(s.per_seed)} ({_interval(s)}) · {steps} · {ratio}{blew}"


def _interval(s) -> str:
    """The 95 % Wilson interval of a trial's solved fraction, in percent: ``21–94%``."""
    lo, hi = wilson_interval(s.solved_seeds, len(s.per_seed))
    return f"{round(100 * lo)}–{round(100 * hi)}%"


def _trials_table(trials: list[dict]) -> str:
    lines = [
        "| trial | variant | gap | solved | 95% interval | median steps to solve "
        "| median final loss | chance loss | diverged | seeds |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|:--|",
    ]
    for t in trials:
        if t["summary"] is None:
            failed = (t.get("failed") or "")[:80].replace("|", "/")
            state = ("damaged" if t["damaged"] else
                     f"failed: {failed}" if failed else "running")
            lines.append(f"| {t['name']} | {t['variant']} | {t['gap']} | {state} | | | | | | |")
            continue
        s = t["summary"]
        loss = "–" if s.median_final_loss is None else f"{s.median_final_loss:.4g}"
        lines.append(
            f"| {t['name']} | {t['variant']} | {t['gap']} | {s.solved_seeds}/{len(s.per_seed)} "
            f"| {_interval(s)} | {_fmt_steps(s.median_steps_to_solve)} | {loss} "
            f"| {s.chance_loss:.4g} "
            f"| {s.diverged_seeds}{f' ({s.blew_up_seeds} blew up)' if s.blew_up_seeds else ''} "
            f"| {_outcome_counts(t)} |"
        )
    return "\n".join(lines) + "\n"


def _markdown(cfg, trials, table: str, plot_paths: list[Path], run_dir: Path,
              frontier_rows=None, found_text: str | None = None, fc=None, sweep=()) -> str:
    """report.md; ``sweep``: the run's expanded sweep (its variants' effective settings)."""
    tc = cfg.train
    finished = sum(t["summary"] is not None for t in trials)
    settings = settings_rows(cfg.model.options, list(sweep))
    rates = {r["learning_rate"] for r in settings}
    lr = (format_value(tc.learning_rate) if len(rates) <= 1 else
          "per variant, see Effective settings")
    if found_text is None:
        found_text = finding(cfg, trials, frontier_rows, fc=fc)
    top = [f"**Finding.** {found_text}\n"]
    cost = cost_sentence(trials)
    if cost:
        top.append(f"**Cost of the gap.** {cost}\n")
    if frontier_rows is not None:
        top += [
            "## Largest gap solved\n",
            f"Gap frontier on `{fc.key}`: probes from {fc.start} (×{format_value(fc.factor)}, up "
            f"to {fc.max}), then bisection to {format_value(fc.resolution * 100)}%; a probe is "
            f"solved when at least {format_value(fc.min_solved * 100)}% of its seeds are.\n",
            frontier_table(frontier_rows, fc),
        ]
    parts = [
        f"# {cfg.name}\n",
        *leaderboard.markdown(cfg, trials, plot_paths, run_dir),  # a search's best trial first
        *top,
        *([f"{cfg.description}\n"] if cfg.description else []),
        f"Task **{cfg.task.name}**; {len(tc.seeds)} seed(s) per trial; up to {tc.steps} steps of "
        f"{tc.optimizer} (learning rate {lr}, batch {tc.batch_size}); evaluated every "
        f"{tc.eval_every} steps on {tc.eval_batch_size} fresh sequences. "
        f"{finished}/{len(trials)} trials finished.\n",
        *_settings_section(cfg, settings, sweep),
        "## Solved fraction by gap\n",
        "Each entry: seeds solved / seeds (95% Wilson interval of the solved fraction) · median "
        "steps to solve · median final loss ÷ chance "
        "loss (1.00 = no better than an input-blind predictor)"
        + (f"; \"blew up\": seeds whose final loss exceeds {format_value(tc.blowup_factor)} × "
           "chance without diverging" if tc.blowup_factor else "") + ".\n",
        table,
        "## Trials\n",
        _trials_table(trials),
    ]
    generalisation = length_table(trials)
    if generalisation:
        parts += [
            "## Length generalisation\n",
            "Each trained trial evaluated at other gaps (`eval.lengths`); entry: seeds solved / "
            "seeds · median accuracy; **bold** = the training gap.\n",
            generalisation,
        ]
    done = [t for t in trials if t["summary"] is not None]
    parts += why.section(done, frontier_rows, _ranked_variants(done, frontier_rows)[:MAX_VARIANTS])
    damaged = [t["damaged"] for t in trials if t["damaged"]]
    if damaged:
        parts.append("## Damaged trials (left out)\n")
        parts.append("".join(f"- {d}\n" for d in damaged))
    if plot_paths:
        parts.append("## Plots\n")
        note = _plots_note(trials, plot_paths, frontier_rows)
        if note:
            parts.append(note + "\n")
        for p in plot_paths:
            parts.append(f"![{p.stem.replace('_', ' ')}]({p.relative_to(run_dir).as_posix()})\n")
    return "\n".join(parts)


def _solve_steps(trials: list[dict]) -> dict[str, list[tuple[int, int]]]:
    """Per variant, (gap, steps to solve) of every solved seed of its finished trials, for
    variants solved at 2 gaps or more."""
    out: dict[str, list[tuple[int, int]]] = {}
    for t in trials:
        s = t["summary"]
        if s is None or not isinstance(t["gap"], (int, float)):
            continue
        out.setdefault(t["variant"], []).extend(
            (t["gap"], r.steps_to_solve) for r in s.per_seed if r.solved and r.steps_to_solve)
    return {v: pts for v, pts in out.items() if len({g for g, _ in pts}) >= 2}


def cost_sentence(trials: list[dict]) -> str:
    """How the steps to solve grow with the gap, per variant with solves at 3 gaps or more: the
    better of a power law (log-log) and an exponential (semi-log) fit, with both fits' R^2."""
    parts = []
    for v, pts in list(_solve_steps(trials).items())[:MAX_VARIANTS]:
        law = growth_law([g for g, _ in pts], [n for _, n in pts])
        if law is None:
            continue
        lo, hi = (format_value(int(x)) for x in law["gaps"])
        power = f"gap^{law['exponent']:.2f}"
        exponential = (f"an exponential doubling every {math.log(2) / law['rate']:.0f} steps of "
                       "gap" if law["rate"] > 0 else "an exponential")
        fits = (f"R^2 {law['r2_power']:.2f} log-log, {law['r2_exponential']:.2f} semi-log; "
                f"{law['points']} solved seeds")
        if abs(law["r2_power"] - law["r2_exponential"]) < 0.05:
            shape = f"as {power} or {exponential}, which fit about equally well"
        elif law["better"] == "power":
            shape = f"as {power}, a power law rather than an exponential"
        else:
            shape = f"as {exponential}, rather than a power law"
        parts.append(f"{v}'s steps to solve grow {shape} from gap {lo} to {hi} ({fits})")
    return ("; ".join(parts) + ".") if parts else ""


def _steps_plot(trials: list[dict], cfg):
    """Steps to solve against the gap per variant (log-log): the median over solved seeds with
    its quartiles (the seeds' spread)."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    for i, (v, pts) in enumerate(_solve_steps(trials).items()):
        color = f"C{i % 10}"
        gaps = sorted({g for g, _ in pts})
        q = [quartiles([n for g2, n in pts if g2 == g]) for g in gaps]
        med = [m for _, m, _ in q]
        ax.errorbar(gaps, med, yerr=[[m - lo for lo, m, _ in q], [hi - m for _, m, hi in q]],
                    marker="o", color=color, label=v, capsize=2, elinewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gap (task.length), log scale")
    ax.set_ylabel("steps to solve (median and quartiles over seeds)")
    ax.set_title(f"{cfg.name}: how the cost grows with the gap ({cfg.task.name})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="variant", fontsize="small")
    return fig


MAX_SETTINGS_ROWS = 30


def _settings_section(cfg, settings: list[dict], sweep) -> list[str]:
    """'Effective settings': per variant its cell, learning rate and the options it trained
    with (its cell's preset included) or did not take; then the notes lstmjax run printed."""
    if len(settings) <= 1 and not any(r["not_applied"] for r in settings):
        return []
    lines = ["| variant | cell | learning rate | options | not applied |",
             "|:--|:--|--:|:--|:--|"]
    for r in settings[:MAX_SETTINGS_ROWS]:
        opts = ", ".join(f"{k}={format_value(v)}" for k, v in r["options"].items()) or "–"
        lines.append(f"| {r['variant'] or '–'} | {r['cell']} | {format_value(r['learning_rate'])} "
                     f"| {opts.replace('|', '/')} | {', '.join(r['not_applied']) or '–'} |")
    more = len(settings) - MAX_SETTINGS_ROWS
    notes = option_notes(cfg.model.options, list(sweep))
    return ["## Effective settings\n", "\n".join(lines) + "\n",
            *([f"(and {more} more variants)\n"] if more > 0 else []),
            *(["".join(f"- {n}\n" for n in notes)] if notes else [])]


def length_table(trials: list[dict]) -> str:
    """Markdown: one row per trained trial (variant, training gap), one column per evaluation
    length; empty when no trial was evaluated at other lengths."""
    import statistics

    rows = [t for t in trials if t["summary"] is not None and t["summary"].length_eval]
    if not rows:
        return ""
    lengths = sorted({e["length"] for t in rows for e in t["summary"].length_eval})
    lines = ["| variant | trained at | " + " | ".join(f"gap {n}" for n in lengths) + " |",
             "|:--|--:" + "|:--" * len(lengths) + "|"]
    for t in rows:
        by = {e["length"]: e for e in t["summary"].length_eval}
        cells = []
        for n in lengths:
            e = by.get(n)
            if e is None:
                cells.append("")
                continue
            text = f"{sum(e['solved'])}/{len(e['solved'])} · {statistics.median(e['accuracy']):.2f}"
            cells.append(f"**{text}**" if e["trained"] else text)
        lines.append(f"| {t['variant']} | {t['gap']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _length_plot(trials: list[dict], cfg):
    """Accuracy (median over seeds) against the evaluation gap, per variant and training gap
    (legend: by variant, then the training gaps in numeric order); the solved threshold dotted
    where the task is solved on its accuracy."""
    import statistics

    fig = _figure(6.8, 4.4)
    ax = fig.add_subplot()
    rows = [t for t in trials if t["summary"].length_eval]
    variants = list(dict.fromkeys(t["variant"] for t in rows))
    styles = ["-", "--", ":", "-."]
    drawn = {v: _spread(sorted({t["gap"] for t in rows if t["variant"] == v}), MAX_GAPS)
             for v in variants}
    rows = sorted((t for t in rows if t["gap"] in drawn[t["variant"]]),
                  key=lambda t: (variants.index(t["variant"]), t["gap"]))
    criteria = {c for c in (_solved_criterion(cfg, t) for t in rows) if c and c[0] == "accuracy"}
    if len(criteria) == 1:
        ax.axhline(next(iter(criteria))[1], color="black", ls=":", lw=1.2, gid="solved-threshold")
    for t in rows:
        i = variants.index(t["variant"])
        gaps = drawn[t["variant"]]
        pts = sorted((e["length"], statistics.median(e["accuracy"]))
                     for e in t["summary"].length_eval)
        color = f"C{i % 10}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=color,
                ls=styles[gaps.index(t["gap"]) % 4], label=f"{t['variant']}, trained at {t['gap']}")
        trained = [p for p in pts if p[0] == t["gap"]]
        if trained:
            ax.plot(*trained[0], marker="*", ms=12, color=color)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("evaluation gap (task.length), log scale; star: the training gap"
                  + ("; dotted: solved" if len(criteria) == 1 else ""))
    ax.set_ylabel("accuracy (median over seeds)")
    ax.set_title(f"{cfg.name}: length generalisation ({cfg.task.name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return fig


def _fmt_steps(x) -> str:
    if x is None:
        return "–"
    return f"{x:g}" if isinstance(x, float) and not x.is_integer() else str(int(x))


def _csv(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (list, tuple)):
        return format_value(v)
    return v


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib imported here only; the object API with the Agg canvas, no pyplot state)
# ----------------------------------------------------------------------------------------------


PLOTS = ("solved_vs_gap.png", "learning_curves.png", "frontier.png", "gradient_flow.png",
         "gates.png", "length_generalisation.png", "all_variants.png", "steps_to_solve.png")
SUMMARY_PLOT = PLOTS[6]


def _plots(run_dir: Path, trials: list[dict], cfg, frontier_rows=None, fc=None) -> list[Path]:
    done = [t for t in trials if t["summary"] is not None]
    if not done:
        return []
    plots = run_dir / PLOTS_DIR
    remove_stale_temporaries(plots, PLOTS)
    ranked = _ranked_variants(done, frontier_rows)
    shown = set(ranked[:MAX_VARIANTS])
    few = [t for t in done if t["variant"] in shown]
    paths = [plots / name for name in PLOTS[:2]]
    _save(_solved_vs_gap(few, cfg), paths[0])
    _save(_learning_curves(few, cfg), paths[1])
    if frontier_rows is not None:
        paths.append(plots / PLOTS[2])
        _save(_frontier_plot(few, cfg, [r for r in frontier_rows if r["variant"] in shown], fc),
              paths[-1])
    if any(t["summary"].length_eval for t in few):
        paths.append(plots / PLOTS[5])
        _save(_length_plot(few, cfg), paths[-1])
    if _solve_steps(few):
        paths.append(plots / PLOTS[7])
        _save(_steps_plot(few, cfg), paths[-1])
    chosen = why.diagnosed(why.boundary_probes(few, frontier_rows, ranked[:MAX_VARIANTS]))
    if chosen:  # the why-plots: at each variant's own boundary (lstmjax.experiment.why)
        paths.append(plots / PLOTS[3])
        _save(why.gradient_flow_plot(chosen, cfg), paths[-1])
        if why.has_gates(chosen):
            paths.append(plots / PLOTS[4])
            _save(why.gates_plot(chosen, cfg), paths[-1])
    paths += leaderboard.plots(plots, done, cfg)  # a search: objective vs each parameter
    summary = plots / SUMMARY_PLOT
    if len(ranked) > MAX_VARIANTS:
        paths.append(summary)
        _save(_all_variants_plot(done, cfg, shown), summary)
    elif summary.is_file() and not summary.is_symlink():
        summary.unlink()  # from an earlier report of more variants: it no longer applies
    return paths


def _ranked_variants(done: list[dict], frontier_rows=None) -> list[str]:
    """The variants with finished trials, best first: by the largest gap solved (a frontier),
    else by the mean solved fraction over their trials, then the lowest median final loss ÷
    chance; ties in the order of the run."""
    import statistics

    order = {v: i for i, v in enumerate(dict.fromkeys(t["variant"] for t in done))}
    if frontier_rows is not None:
        largest = {r["variant"]: r["largest_solved"] for r in frontier_rows}
    by: dict[str, list] = {v: [] for v in order}
    for t in done:
        by[t["variant"]].append(t["summary"])

    def key(v):
        ratios = [s.median_final_loss / s.chance_loss for s in by[v]
                  if s.median_final_loss is not None and s.chance_loss]
        loss = statistics.median(ratios) if ratios else math.inf
        loss = math.inf if math.isnan(loss) else loss
        solved = statistics.fmean(s.solved_fraction for s in by[v])
        if frontier_rows is not None:
            solved = -1 if largest.get(v) is None else largest[v]
        return (-solved, loss, order[v])

    return sorted(order, key=key)


def _plots_note(trials: list[dict], plot_paths: list[Path], frontier_rows=None) -> str:
    """What the plots leave out of a large run (empty when they draw everything)."""
    done = [t for t in trials if t["summary"] is not None]
    n = len(dict.fromkeys(t["variant"] for t in done))
    notes = []
    if n > MAX_VARIANTS:
        how = ("largest gap solved" if frontier_rows is not None else
               "mean solved fraction, then median final loss ÷ chance")
        summary = next((p for p in plot_paths if p.name == SUMMARY_PLOT), None)
        notes.append(f"The plots draw {MAX_VARIANTS} of {n} variants, the best by {how}"
                     + (f"; `{PLOTS_DIR}/{SUMMARY_PLOT}` summarises all {n}" if summary else "")
                     + "; the tables above list every trial.")
    owns = [[t for t in done if t["variant"] == v]
            for v in _ranked_variants(done, frontier_rows)[:MAX_VARIANTS]]
    if any(len({t["gap"] for t in own}) > len(_curves(own)) for own in owns):
        notes.append(f"A learning-curve panel draws at most {MAX_CURVES} gaps (evenly spread), "
                     "each the median of its seeds with their min–max band.")
    return " ".join(notes)


def _spread(items: list, k: int) -> list:
    """At most ``k`` of ``items``, evenly spread, the first and the last included."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _curves(trials: list[dict]) -> list[dict]:
    """The trials (one per gap, in gap order) one learning-curve panel draws, each as the
    median of its seeds with their band: at most :data:`MAX_CURVES`, the gaps evenly spread."""
    by_gap = {t["gap"]: t for t in sorted(trials, key=lambda t: t["gap"])}
    return [by_gap[g] for g in _spread(list(by_gap), MAX_CURVES)]


def _all_variants_plot(trials: list[dict], cfg, shown: set[str]):
    """Every finished trial of a run with more variants than the other plots draw: solved
    fraction vs gap (one point per trial; the drawn variants' points ringed) and the spread of
    median final loss ÷ chance -- each panel a fixed number of artists, however many trials."""
    import numpy as np

    fig = _figure(11.0, 4.0)
    left, right = fig.subplots(1, 2)
    variants = len(dict.fromkeys(t["variant"] for t in trials))
    gaps = np.array([t["gap"] for t in trials], float)
    frac = np.array([t["summary"].solved_fraction for t in trials], float)
    best = np.array([t["variant"] in shown for t in trials])
    left.scatter(gaps, frac, s=8, color="C0", alpha=0.25, lw=0, label="a trial")
    left.scatter(gaps[best], frac[best], s=30, facecolors="none", edgecolors="C3", lw=0.8,
                 label=f"the {len(shown)} variants drawn in the other plots")
    levels = sorted(set(gaps.tolist()))
    left.plot(levels, [float(np.median(frac[gaps == g])) for g in levels], color="black",
              lw=1.2, label="median over variants")
    if len(levels) > 1 and min(levels) > 0:
        left.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    if len(levels) <= 12:
        left.set_xticks(levels, [f"{g:g}" for g in levels])
    left.set_ylim(-0.07, 1.07)
    left.set_xlabel("gap")
    left.set_ylabel("fraction of seeds solved")
    left.set_title("solved fraction, every trial", fontsize="medium")
    left.grid(alpha=0.3)
    left.legend(fontsize="x-small")
    ratios = np.array([t["summary"].median_final_loss / t["summary"].chance_loss
                       for t in trials if t["summary"].median_final_loss is not None
                       and t["summary"].chance_loss], float)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    if ratios.size:
        lo, hi = ratios.min(), ratios.max()
        bins = np.geomspace(lo, hi * 1.0001, 31) if hi > lo else 10
        right.hist(ratios, bins=bins, color="C0", alpha=0.8)
        if hi > lo:
            right.set_xscale("log")
        right.axvline(1.0, color="black", ls="--", lw=1)
    right.set_xlabel("median final loss ÷ chance (dashed: chance)")
    right.set_ylabel("trials")
    right.set_title("final loss, every trial", fontsize="medium")
    right.grid(alpha=0.3)
    fig.suptitle(f"{cfg.name}: all {variants} variants, {len(trials)} finished trials "
                 f"({cfg.task.name})")
    return fig


def _existing_plots(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / PLOTS_DIR / n for n in PLOTS + leaderboard.PLOTS)
            if p.exists()]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _solved_vs_gap(trials: list[dict], cfg):
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    variants = list(dict.fromkeys(t["variant"] for t in trials))
    gaps = sorted(set(t["gap"] for t in trials))
    markers = "osD^vP*Xh<>"
    for i, v in enumerate(variants):
        mine = sorted((t["gap"], t["summary"]) for t in trials if t["variant"] == v)
        # a small vertical offset per variant keeps coinciding lines (all at 1.0) visible
        offset = 0.012 * (i - (len(variants) - 1) / 2)
        _with_intervals(ax, mine, offset, marker=markers[i % len(markers)], label=v,
                        color=f"C{i % 10}")
    if len(gaps) > 1 and min(gaps) > 0:
        ax.set_xscale("log", base=2)
    ticks = _spread(gaps, 12)
    ax.set_xticks(ticks, [str(g) for g in ticks])
    ax.set_ylim(-0.07, 1.07)
    ax.set_xlabel("gap (task.length)")
    ax.set_ylabel("fraction of seeds solved, 95% Wilson interval\n(lines offset slightly)")
    ax.set_title(f"{cfg.name}: solved fraction vs gap ({cfg.task.name})")
    ax.grid(alpha=0.3)
    ax.legend(title="variant", fontsize="small")
    return fig


def _with_intervals(ax, points: list[tuple[int, Any]], offset: float, **style) -> None:
    """Solved fraction against the gap for one variant (``(gap, TrialSummary)`` points), each
    with its 95 % Wilson interval as an error bar; the line and bars shifted by ``offset``."""
    xs = [g for g, _ in points]
    fracs = [s.solved_fraction for _, s in points]
    bounds = [wilson_interval(s.solved_seeds, len(s.per_seed)) for _, s in points]
    # the interval holds the fraction; max() drops the rounding of an all/none-solved bound
    err = [[max(0.0, f - lo) for f, (lo, _) in zip(fracs, bounds, strict=True)],
           [max(0.0, hi - f) for f, (_, hi) in zip(fracs, bounds, strict=True)]]
    ax.errorbar(xs, [f + offset for f in fracs], yerr=err, capsize=2, elinewidth=0.8,
                alpha=0.9, linestyle="-" if len(xs) > 1 else "none", **style)


def _learning_curves(trials: list[dict], cfg):
    """One panel per variant: the evaluation loss ÷ the chance loss against the step (log y),
    per gap the median over seeds with the seeds' min-max band, chance (1) dashed and the
    task's solved threshold dotted where it is a loss ratio; below it, for a classification
    task or one solved on accuracy (:func:`_accuracy_row`), the accuracy the same way with
    its threshold. Each panel's legend lists its gaps in numeric order; a gap has one colour
    (a colormap ordered by gap) in every panel."""
    variants = list(dict.fromkeys(t["variant"] for t in trials))
    drawn = {v: _curves([t for t in trials if t["variant"] == v]) for v in variants}
    every = [t for own in drawn.values() for t in own]
    colors = _gap_colors(sorted({t["gap"] for t in every}))
    criteria = {id(t): _solved_criterion(cfg, t) for t in every}
    accuracy = _accuracy_row(every, criteria)
    per = 2 if accuracy else 1
    ncols = min(3, len(variants))
    nrows = math.ceil(len(variants) / ncols)
    fig = _figure(4.2 * ncols, (3.2 + 2.0 * (per - 1)) * nrows)
    axes = fig.subplots(nrows * per, ncols, squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [3.2, 2.0][:per] * nrows})
    loss_axes = list(axes[0::per].flat)
    acc_axes = list(axes[1::per].flat) if accuracy else []
    for row in (loss_axes, acc_axes):
        for ax in row[1:]:
            ax.sharey(row[0])
        for ax in row[len(variants):]:
            ax.set_visible(False)
    for i, v in enumerate(variants):
        ax = loss_axes[i]
        for t in drawn[v]:
            color, chance = colors[t["gap"]], t["summary"].chance_loss
            band = _seed_band(t["metrics"], "loss", chance) if chance and chance > 0 else None
            alpha = 0.2 if len(drawn[v]) <= 4 else 0.1  # many overlapping bands stay legible
            if band is not None:
                _draw_band(ax, band, color, str(t["gap"]), alpha)
            band = _seed_band(t["metrics"], "accuracy") if accuracy else None
            if band is not None:
                _draw_band(acc_axes[i], band, color, None, alpha)
        ax.axhline(1.0, color="black", ls="--", lw=1, alpha=0.7, gid="chance")
        _threshold_lines(ax, drawn[v], criteria, "loss", colors)
        ax.set_yscale("log")
        ax.set_title(v)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="gap", fontsize="x-small", title_fontsize="x-small",
                      ncols=2 if len(drawn[v]) > 8 else 1)
        if accuracy:
            _threshold_lines(acc_axes[i], drawn[v], criteria, "accuracy", colors)
            acc_axes[i].set_ylim(-0.03, 1.03)
            acc_axes[i].grid(alpha=0.3)
    for r in range(nrows):
        loss_axes[r * ncols].set_ylabel("loss ÷ chance loss")
        if accuracy:
            acc_axes[r * ncols].set_ylabel("accuracy")
    bottom = acc_axes or loss_axes
    for ax in axes.flat:
        ax.tick_params(labelbottom=ax in bottom)
    for ax in bottom:
        ax.set_xlabel("step")
    fig.suptitle(f"{cfg.name}: learning curves ({cfg.task.name})\nline: median over seeds, "
                 "band: their min–max; dashed: chance, dotted: the solved threshold",
                 fontsize="medium")
    return fig


def _gap_colors(gaps: list) -> dict:
    """{gap: colour}: a sequential colormap in the order of the (sorted) gaps, so that the
    colour reads as the gap's size and a gap has the same colour in every panel."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = len(gaps)
    return {g: cmap(0.85 * i / (n - 1) if n > 1 else 0.0) for i, g in enumerate(gaps)}


def _seed_band(metrics: list[dict], key: str, scale: float = 1.0):
    """(steps, median, min, max) over the seeds of ``metrics`` lines' finite ``key`` / ``scale``
    at each evaluation step (positive values only for the loss, drawn on a log axis); None
    when there is none."""
    import numpy as np

    by_step: dict[int, list[float]] = {}
    for m in metrics:
        v = m.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        if key == "loss" and v <= 0:
            continue
        by_step.setdefault(m["step"], []).append(v / scale)
    if not by_step:
        return None
    steps = sorted(by_step)
    vals = [np.asarray(by_step[s], float) for s in steps]
    return (np.asarray(steps, float), np.array([np.median(v) for v in vals]),
            np.array([v.min() for v in vals]), np.array([v.max() for v in vals]))


def _draw_band(ax, band, color, label, alpha: float) -> None:
    steps, med, lo, hi = band
    ax.fill_between(steps, lo, hi, color=color, alpha=alpha, lw=0)
    ax.plot(steps, med, color=color, lw=1.3, label=label, marker="o" if len(steps) == 1 else None)


def _threshold_lines(ax, drawn: list[dict], criteria: dict, kind: str, colors: dict) -> None:
    """The solved threshold of a panel's trials on its ``kind`` axis ("loss": a loss ÷ chance
    ratio, "accuracy"): one black dotted line, or one per gap in its colour where they differ."""
    values = {t["gap"]: c[1] for t in drawn if (c := criteria[id(t)]) and c[0] == kind}
    if len(set(values.values())) == 1:
        ax.axhline(next(iter(values.values())), color="black", ls=":", lw=1.2,
                   gid="solved-threshold")
        return
    for gap, value in values.items():
        ax.axhline(value, color=colors[gap], ls=":", lw=1.2, gid="solved-threshold")


def _accuracy_row(trials: list[dict], criteria: dict) -> bool:
    """Whether the learning curves draw accuracy: the metrics record it and the task is a
    classification (cross-entropy) task or is solved on its accuracy."""
    recorded = any(m.get("accuracy") is not None for t in trials for m in t["metrics"])
    return recorded and any(t["summary"].loss_type != "mse"
                            or (criteria[id(t)] or ("",))[0] == "accuracy" for t in trials)


def _trial_task(cfg, t: dict):
    """The task a finished trial trained on (the run's task parameters with the trial's
    ``task.*`` values, at its length), or None where it cannot be built here (e.g. a task
    from a plugin that is not installed)."""
    import lstmjax.tasks as tasks
    from lstmjax.train.model import hashable

    s = t["summary"]
    params = dict(cfg.task.params)
    for key, value in (t.get("assignment") or {}).items():
        if key.startswith("task.") and key not in ("task.name", "task.length"):
            params[key.removeprefix("task.")] = value
    try:
        return tasks.make(s.task, length=s.length, **hashable(params))
    except Exception:  # noqa: BLE001 -- no threshold line is drawn; the curves still are
        return None


def _solved_criterion(cfg, t: dict) -> tuple[str, float] | None:
    """Where a trial's ``solved`` criterion lies on the learning-curve axes: ``("loss", r)``
    when it is loss < r x the chance loss whatever the accuracy (adding: r = 0.01),
    ``("accuracy", a)`` when it is accuracy >= a whatever the loss; None otherwise or where
    the task cannot be built. Read by asking the task's own ``is_solved`` just either side of
    its ``solved_threshold``, so a task that overrides it is drawn as it decides."""
    task = _trial_task(cfg, t)
    if task is None:
        return None
    try:
        thr, chance = float(task.solved_threshold), float(task.chance_loss)

        def solved(loss, acc) -> bool:
            return bool(task.is_solved(loss, acc))

        below = thr - 1e-4 * max(abs(thr), 1e-3)
        if all(solved(x * chance, thr) and not solved(x * chance, below)
               for x in (0.0, 1.0, 1e6)):
            return "accuracy", thr
        if thr > 0 and chance > 0 and all(
                solved(thr * (1 - 1e-4) * chance, a) and not solved(thr * (1 + 1e-4) * chance, a)
                for a in (0.0, 0.5, 1.0)):
            return "loss", thr
    except Exception:  # noqa: BLE001 -- an is_solved that takes no Python floats: no line
        return None
    return None


# ----------------------------------------------------------------------------------------------
# Deprecated: ``lj.experiment.report(run_dir)`` -- the module itself is callable for one release
# ----------------------------------------------------------------------------------------------


class _CallableModule(types.ModuleType):
    def __call__(self, run_dir, **kwargs):
        warnings.warn(
            "lstmjax.experiment.report(run_dir) is deprecated; call "
            "lstmjax.experiment.write_report(run_dir)",
            DeprecationWarning,
            stacklevel=2,
        )
        return write_report(run_dir, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def _frontier_plot(trials: list[dict], cfg, rows: list[dict], fc):
    """Solved fraction vs gap per variant (log x), each variant's frontier marked."""
    fig = _figure(6.8, 4.4)
    ax = fig.add_subplot()
    markers = "osD^vP*Xh<>"
    for i, r in enumerate(rows):
        mine = sorted((t["gap"], t["summary"]) for t in trials if t["variant"] == r["variant"])
        if not mine:
            continue
        color = f"C{i % 10}"
        offset = 0.012 * (i - (len(rows) - 1) / 2)
        _with_intervals(ax, mine, offset, marker=markers[i % 11], color=color,
                        label=r["variant"])
        if r["largest_solved"] is not None:
            ax.axvline(r["largest_solved"], color=color, ls="--", lw=1, alpha=0.7)
    ax.axhline(fc.min_solved, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    gaps = sorted({t["gap"] for t in trials})
    if len(gaps) <= 12:
        ax.set_xticks(gaps, [str(g) for g in gaps])
    ax.set_ylim(-0.07, 1.07)
    ax.set_xlabel(f"gap ({fc.key}), log scale; dashed: largest gap solved")
    ax.set_ylabel("fraction of seeds solved, 95% Wilson interval")
    ax.set_title(f"{cfg.name}: gap frontier ({cfg.task.name})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="variant", fontsize="small")
    return fig
