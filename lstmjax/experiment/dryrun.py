"""A dry run: what ``lstmjax run CONFIG`` would train, checked as the run checks it, with nothing
written -- no run directory, no lock, no compilation cache, nothing compiled.

    plan = dry_run("configs/quickstart.yaml", overrides=["frontier.max=320"])
    print(format_dry_run(plan))        # `lstmjax run configs/quickstart.yaml --dry-run`

:func:`dry_run` returns a :class:`DryRun`: the resolved config; the trials (every trial of a
grid or random search; a frontier's first probe per variant, the rule that decides the next
ones and a bound on their number; an optuna study's first proposals and its number of trials);
the options applied per variant (:func:`~lstmjax.experiment.effective.settings_rows`) and the
notes a run prints about them; each trial's memory estimate
(:func:`~lstmjax.experiment.resources.largest_program`, the number the run's pre-flight check
holds against the device); the programs the run would compile; and the run directory, whether
it exists and, with ``resume``, which trials are finished, resumed or new
(:func:`~lstmjax.experiment.rundir.plan_run`, read-only). Every check the run makes before it
writes anything is made here too, so a config (or directory) the run would refuse raises the
same one-line error.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from lstmjax.experiment import frontier as frontier_plan
from lstmjax.experiment import loggers, search
from lstmjax.experiment.config import ConfigError, apply_overrides, load_experiment, to_dict
from lstmjax.experiment.config import load_trials as _load_trials
from lstmjax.experiment.effective import option_notes, settings_rows
from lstmjax.experiment.resources import (
    check_dtypes,
    check_fits,
    largest_program,
    memory_limit_bytes,
)
from lstmjax.experiment.rundir import RunLock, TrialState, plan_run, plan_trials, run_dir_for
from lstmjax.experiment.schedule import (
    data_parallel_placement,
    init_key,
    make_jobs,
    select_devices,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.sweep import Trial, format_value

__all__ = ["DryRun", "PlannedTrial", "dry_run", "format_dry_run"]


@dataclasses.dataclass(frozen=True)
class PlannedTrial:
    """One trial a run would train (or read back): its ``name``, ``variant`` and swept
    ``values``, its memory estimate in bytes (``memory_bytes``; ``memory_at``: the
    ``eval.lengths`` value of its largest program, None for the training chunk), its ``state``
    with ``resume`` (``new``, ``restart``, ``resume``, ``finished``; None without resume) and,
    for an optuna proposal that repeats an earlier one, that trial's name (``repeats``)."""

    name: str
    variant: str
    values: dict[str, Any]
    memory_bytes: int
    memory_at: int | None = None
    state: str | None = None
    repeats: str | None = None


@dataclasses.dataclass(frozen=True)
class DryRun:
    """What a run of ``config`` would do (see the module docstring).

    ``search``: ``grid``, ``random``, ``frontier`` or ``optuna``. ``trials``: the trials shown
    (all of a grid or random search; a frontier's first probes, and with ``resume`` the probes
    its directory holds; an optuna study's first proposals, and with ``resume`` the trials its
    study holds). ``count``: the trials of the run -- exact for a grid or random search
    (``exact``), else an upper bound (a frontier's ``max_probes`` per variant times the
    variants; an optuna study's ``num_trials``). ``rule``: how a frontier or a study decides
    the next trials. ``settings`` and ``notes``: the options per variant and the lines the
    run prints about them. ``memory``: ``{"largest_bytes", "largest_trial", "limit_bytes"}``
    (the largest trial a frontier may reach is its probe at ``frontier.max``). ``programs``:
    ``{"training", "initialisers", "diagnostics", "length_evaluations", "exact"}`` -- the
    programs XLA would compile (fewer when the persistent compilation cache has them).
    ``run_dir``, ``exists`` and ``resume``: where the run would write."""

    config: dict
    search: str
    trials: tuple[PlannedTrial, ...]
    count: int
    exact: bool
    settings: list[dict]
    notes: list[str]
    memory: dict
    programs: dict
    run_dir: str
    exists: bool
    resume: bool
    devices: list[str]
    rule: str | None = None
    max_probes: int | None = None
    variants: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def dry_run(config: ExperimentConfig | str | os.PathLike, *, overrides=(), imports=(),
            out_dir: str | os.PathLike | None = None, resume: bool = False,
            devices: int | None = None, force_unlock: bool = False,
            trials: list[Trial] | None = None) -> DryRun:
    """What ``lj.experiment.run(config, out_dir, resume=resume)`` would do, as a
    :class:`DryRun`; writes nothing. ``config``: a loaded config or a YAML path (then
    ``overrides`` -- ``["train.steps=200"]`` -- and ``imports`` apply as in
    :func:`~lstmjax.experiment.load_config`; with a loaded config, ``overrides`` are applied
    to it and it is validated again). ``devices`` and ``force_unlock``: as the run's.
    ``trials``: ``expand(cfg)`` if the caller has it.
    Raises the one-line :class:`~lstmjax.experiment.ConfigError` (or ``RunError``) the run
    would raise before writing anything."""
    if isinstance(config, ExperimentConfig):
        if overrides or imports:
            raw = apply_overrides(to_dict(config), list(overrides))
            raw["imports"] = list(raw.get("imports") or []) + [
                m for m in imports if m not in (raw.get("imports") or [])]
            cfg, trials = _load_trials(raw)
        else:
            cfg = config
    elif isinstance(config, (str, os.PathLike)):
        cfg, trials = load_experiment(config, overrides, imports=imports)
    else:
        raise ConfigError(f"config: expected a loaded config or a YAML path, got "
                          f"{type(config).__name__}")
    if trials is None:
        from lstmjax.experiment.sweep import expand

        trials = expand(cfg)
    run_dir = run_dir_for(cfg, out_dir)
    kind = search.kind(cfg)
    # the run's checks before it writes anything (executor.run_trials), in its order
    found = search.for_config(cfg, run_dir, trials=trials, resume=resume)
    check_dtypes(found.upfront)
    loggers.check_loggers(cfg)
    check_fits(found.upfront)
    RunLock(run_dir, force=force_unlock).check()
    chosen = select_devices(devices if devices is not None else cfg.output.devices)
    data_parallel_placement(list(found.upfront), chosen)
    exists = run_dir.exists()
    plan = plan_run(run_dir, cfg, found.upfront if found.fixed else [], resume)

    rule = max_probes = None
    variants = len(trials) if kind == "frontier" else None
    described = trials  # whose options per variant are shown
    new = TrialState.NEW.value if resume else None
    if kind in ("grid", "random"):
        shown = [_planned(t, plan.get(t.name) if resume else None) for t in found.upfront]
        count, exact = len(found.upfront), True
    elif kind == "frontier":
        fc = found.fc
        max_probes = frontier_plan.max_probes(fc)
        count, exact = max_probes * len(trials), False
        seeds = {len(t.cfg.train.seeds) for t in found.upfront}
        rule = frontier_plan.rule(fc, seeds.pop() if len(seeds) == 1 else None)
        held = _replayed(cfg, run_dir, trials) if resume and exists else []
        shown = [p for _, p in held] or [_planned(t, new) for t in found.upfront]
    else:  # optuna: the options of the proposals, not of the search space's bounds
        from lstmjax.experiment.search.optuna import startup_trials

        space = cfg.search
        count, exact = space.num_trials, False
        rule = (f"{startup_trials(space)} random proposals (TPE's start-up, seeded by "
                f"sweep.seed {space.seed}), then TPE proposes each next trial from the "
                f"objective {space.objective} ({space.direction}) of those told; "
                f"{space.num_trials} trials in all, one after another")
        pairs = (_replayed(cfg, run_dir, trials) if resume and exists else []) or (
            _first_asks(cfg, new))
        described, shown = [t for t, _ in pairs], [p for _, p in pairs]

    largest = max(found.largest, key=lambda t: largest_program(t.cfg).bytes, default=None)
    memory = {"largest_bytes": largest_program(largest.cfg).bytes if largest else 0,
              "largest_trial": largest.name if largest else None,
              "limit_bytes": memory_limit_bytes()}
    return DryRun(
        config=to_dict(cfg), search=kind, trials=tuple(shown), count=count, exact=exact,
        settings=settings_rows(cfg.model.options, described),
        notes=option_notes(cfg.model.options, trials), memory=memory,
        programs=_programs(cfg, kind, found, plan, count - sum(
            p.state == TrialState.FINISHED.value for p in shown) if not exact else count, exact),
        run_dir=str(run_dir), exists=exists, resume=resume,
        devices=[f"{d.platform}:{d.id}" for d in chosen], rule=rule, max_probes=max_probes,
        variants=variants)


def _planned(trial: Trial, state=None, repeats: str | None = None) -> PlannedTrial:
    program = largest_program(trial.cfg)
    return PlannedTrial(trial.name, trial.variant, dict(trial.values), program.bytes,
                        program.length, None if state is None else str(state), repeats)


def _replayed(cfg: ExperimentConfig, run_dir: Path, trials: list[Trial]
              ) -> list[tuple[Trial, PlannedTrial]]:
    """The trials a frontier's or a study's directory holds (the frontier's next probe per
    variant included), with their states -- all read-only."""
    held = search.replay(cfg, run_dir, trials).trials
    states = plan_trials(run_dir, held)
    return [(t, _planned(t, states[t.name])) for t in held]


def _first_asks(cfg: ExperimentConfig, state: str | None) -> list[tuple[Trial, PlannedTrial]]:
    """An optuna study's first proposals (:func:`~.search.optuna.first_asks`); a point that
    makes no valid trial is left out (the run tells the study it failed)."""
    from lstmjax.experiment.search.optuna import first_asks

    out = []
    names: dict[int, str] = {}
    for number, (trial, first) in enumerate(first_asks(cfg)):
        if isinstance(trial, Trial):
            names[number] = trial.name
            out.append((trial, _planned(trial, state,
                                        None if first is None else names.get(first))))
    return out


def _programs(cfg: ExperimentConfig, kind: str, found, plan: dict, count: int,
              exact: bool) -> dict:
    """The programs a run compiles: a training chunk per job (:func:`make_jobs`; a frontier
    or a study: up to one per trial still to train, ``count``; a frontier whose gaps share
    programs, :mod:`.gap_programs`: one per variant and buffer), an initialiser per distinct
    :func:`init_key`, a diagnostics program per job (``diagnostics:``; one per variant where a
    frontier's gaps share it) and one per ``eval.lengths`` value per trial."""
    from lstmjax import tasks
    from lstmjax._util import hashable
    from lstmjax.experiment.gap_programs import buffer_length, buffers_used, diagnostics_buffer

    if exact:
        jobs = make_jobs(list(found.upfront), {k: str(v) for k, v in plan.items()})
        training = len(jobs)
        firsts = [(j.trials[0], j.seeds) for j in jobs]
        trained = [t for j in jobs for t in j.trials]
    else:
        training = count
        firsts = [(t, len(t.cfg.train.seeds)) for t in found.upfront]
        trained = None
    diagnostics = training if cfg.diagnostics is not None else 0
    if not exact and kind == "frontier":
        variants = len(found.upfront)
        if all(buffer_length(t.cfg) is not None for t in found.upfront):
            training = min(count, variants * buffers_used(found.fc))  # one per buffer
        if diagnostics and all(diagnostics_buffer(t.cfg) is not None for t in found.upfront):
            diagnostics = min(count, variants)  # one per variant, shared by its gaps
    keys = set()
    for t, seeds in firsts:
        task = tasks.make(t.cfg.task.name, length=t.cfg.task.length, **hashable(t.cfg.task.params))
        keys.add(init_key(t.cfg, seeds, task.input_size, task.output_size))
    lengths = len(cfg.eval.lengths) if cfg.eval is not None else 0
    return {"training": training,
            "initialisers": count if kind == "optuna" else len(keys),
            "diagnostics": diagnostics,
            "length_evaluations": lengths * (len(trained) if trained is not None else count),
            "exact": exact}


# ---- text ------------------------------------------------------------------------------------


def format_dry_run(plan: DryRun) -> str:
    """The dry run as text: what ``lstmjax run CONFIG --dry-run`` prints."""
    from lstmjax.experiment.config import dump_yaml

    up_to = "" if plan.exact else "up to "
    lines = ["# resolved config", dump_yaml(plan.config).rstrip(), ""]
    if plan.search == "frontier":
        lines.append(f"search: gap frontier over {plan.config['frontier']['key']}, "
                     f"{plan.variants} variant(s); at most {plan.max_probes} probes per variant "
                     f"({plan.count} in all)")
        lines.append(f"  rule: {plan.rule}")
        title = "probes in the run directory" if plan.resume and _held(plan) else (
            "first probe per variant")
    elif plan.search == "optuna":
        lines.append(f"search: optuna study, {plan.count} trials")
        lines.append(f"  rule: {plan.rule}")
        title = "trials in the study" if plan.resume and _held(plan) else "first proposals"
    else:
        lines.append(f"search: {plan.search}, {plan.count} trial(s)")
        title = "trials"
    lines.append(f"{title} ({len(plan.trials)}):")
    width = max((len(t.name) for t in plan.trials), default=0)
    for t in plan.trials:
        extra = "" if t.memory_at is None else f" at eval length {t.memory_at}"
        state = f"  [{t.state}]" if t.state is not None else ""
        again = f"  (repeats {t.repeats}: not trained again)" if t.repeats else ""
        lines.append(f"  {t.name:<{width}}  memory ~{_size(t.memory_bytes)}{extra}"
                     f"{state}{again}")
    if plan.resume:
        states = [t.state for t in plan.trials if t.state is not None]
        counted = ", ".join(f"{states.count(s)} {s}" for s in
                            ("finished", "resume", "restart", "new") if s in states)
        lines.append(f"  resume: {counted or 'nothing yet'}"
                     + ("" if plan.exact else " (the search decides the rest as it goes)"))
    lines.append("options per variant:")
    for row in plan.settings:
        options = ", ".join(f"{k}={format_value(v)}" for k, v in row["options"].items())
        dropped = (f"; not applied: {', '.join(row['not_applied'])}" if row["not_applied"]
                   else "")
        lines.append(f"  {row['variant'] or row['cell']}: cell {row['cell']}, learning_rate "
                     f"{format_value(row['learning_rate'])}, options {{{options}}}{dropped}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    m = plan.memory
    limit = m["limit_bytes"]
    device = ("" if not limit else f"; MORE than this device's {_size(limit)}"
              if m["largest_bytes"] > limit else f"; this device has {_size(limit)}")
    lines.append(f"memory: largest trial {m['largest_trial']} ~{_size(m['largest_bytes'])} "
                 f"(estimate{device})")
    p = plan.programs
    extras = [f"{p['diagnostics']} diagnostics"] if p["diagnostics"] else []
    if p["length_evaluations"]:
        extras.append(f"{p['length_evaluations']} length evaluations")
    lines.append(f"programs to compile: {up_to}{p['training']} training, "
                 f"{up_to}{p['initialisers']} initialiser(s)"
                 + (f", {up_to}" + f", {up_to}".join(extras) if extras else "")
                 + " (fewer where the persistent compilation cache holds them)")
    lines.append(f"devices: {len(plan.devices)} ({', '.join(plan.devices)})")
    where = ("exists; --resume continues it" if plan.exists and plan.resume
             else "exists (empty)" if plan.exists else "does not exist; the run creates it")
    lines.append(f"run directory: {plan.run_dir} ({where})")
    lines.append("dry run: nothing was written")
    return "\n".join(lines) + "\n"


def _held(plan: DryRun) -> bool:
    return any(t.state not in (None, "new") for t in plan.trials)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
