"""Validating an experiment config: the schema of the whole file, the sweep keys, then every
trial of the sweep -- its cell and task names, the options block, its own schema, its cell and
task built once each -- with problems reported by key path (:func:`from_dict`). The sweep is
expanded once here; :func:`load_trials` returns the trials it validated."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import ValidationError

from lstmjax._util import close_match, hashable
from lstmjax.experiment.effective import check_distinct_models
from lstmjax.experiment.errors import (
    ConfigError,
    did_you_mean,
    format_validation_error,
    one_line,
    type_name,
)
from lstmjax.experiment.schema import (
    SECTIONS,
    SWEEPABLE,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
)
from lstmjax.experiment.space import Pick
from lstmjax.experiment.sweep import (
    Point,
    Trial,
    axis_labels,
    base_raw,
    check_names,
    group_label,
    is_group,
    make_point,
    make_trial,
    points,
    swept_keys,
    trials_of,
)

__all__ = ["from_dict", "load_trials", "trial_at", "fields_at", "known_paths"]


def from_dict(raw: Any) -> ExperimentConfig:
    """Validate a plain dict (as read from YAML) into an :class:`ExperimentConfig`.

    One pass: the schema of the whole file, the sweep keys, then every trial of the sweep --
    its cell and task names, the options block, its own schema, and its cell and task built
    once each (identical builds shared) -- with problems reported by key path.
    """
    return load_trials(raw)[0]


def load_trials(raw: Any) -> tuple[ExperimentConfig, list[Trial]]:
    """:func:`from_dict` and the expanded trials it validated."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type_name(raw)}")
    _import_plugins(raw.get("imports"))
    cfg = _validate(raw)
    method = cfg.search.method
    if method == "optuna":
        _check_optuna()
    _check_sweep_keys(cfg)
    if cfg.frontier is not None:
        if method != "grid":
            raise ConfigError(f"frontier: cannot be combined with sweep.method {method} (the "
                              "frontier searches the gap of each variant of a grid sweep)")
        return cfg, _check_frontier(cfg)
    return cfg, _validate_trials(cfg)


def _check_optuna() -> None:
    """``sweep.method: optuna`` needs the optional package (the ``optuna`` extra)."""
    try:
        import optuna  # noqa: F401
    except ImportError as e:
        broken = "" if isinstance(e, ModuleNotFoundError) and e.name == "optuna" else (
            f", which fails to import ({type(e).__name__}: {one_line(e)[:120]})")
        raise ConfigError(f"sweep.method: optuna needs the optional package optuna{broken}: "
                          "pip install 'lstmjax[optuna]'") from None


def trial_at(cfg: ExperimentConfig, index: int, picks: dict[str, Pick],
             seen: set[str] | None = None) -> Trial:
    """The trial a search proposes (``picks``: a value per swept key), validated like a point
    of the sweep: its names, its schema, its cell and task built. Its name is made unique
    against ``seen`` (:func:`lstmjax.experiment.sweep.make_trial`). Raises :class:`ConfigError`."""
    point = make_point(base_raw(cfg), index, picks)
    _check_names(cfg, point)
    builder = _Builder()
    return make_trial(point, lambda p: builder.check(cfg, p), axis_labels(cfg),
                      set() if seen is None else seen)


def _check_frontier(cfg: ExperimentConfig) -> list[Trial]:
    """The frontier's key is an integer key that is not swept, and every variant builds at the
    search's first and largest gap; returns the variants (trials without the gap set)."""
    fc = cfg.frontier
    key = fc.key
    parts = key.split(".")
    if parts[0] not in SWEEPABLE or len(parts) < 2:
        raise ConfigError(f"frontier.key: {key!r} must be a dotted key under task, model or "
                          "train, e.g. task.length")
    if key in swept_keys(cfg) or key in cfg.sweep:
        raise ConfigError(f"frontier.key: {key} is also swept; the frontier searches it, "
                          f"remove sweep.{key}")
    variants = list(points(cfg))  # the sweep, expanded once
    check_names(cfg, variants, {key: fc.start})  # (probes differ only in the gap)
    base = base_raw(cfg)
    ends = (("start", fc.start), ("max", fc.max))
    probes = [make_point(base, 2 * i + j,
                         {**v.picks, key: Pick(gap, f"frontier.{name}: {key}={gap}", None)})
              for i, v in enumerate(variants) for j, (name, gap) in enumerate(ends)]
    ends_trials = _check_points(cfg, probes, [], axis_labels(cfg, (key,)))  # both ends
    check_distinct_models(ends_trials)  # two variants that build the same model
    trials = trials_of(cfg, variants)
    if fc.max_budget is not None:
        for t in trials:
            _check_budget(fc, t)
    return trials


def _check_budget(fc, trial: Trial) -> None:
    """A probe extended to ``frontier.max_budget`` must continue exactly as a run made with
    that budget from the start would (see :func:`lstmjax.experiment.rundir.raised_budget`)."""
    tc, who = trial.cfg.train, f" (variant {trial.variant})" if trial.variant else ""
    if fc.max_budget < tc.steps:
        raise ConfigError(f"frontier.max_budget: {fc.max_budget} is smaller than train.steps "
                          f"({tc.steps}){who}; use at least train.steps, or null")
    if fc.max_budget > tc.steps and tc.schedule == "cosine":
        raise ConfigError(f"frontier.max_budget: {fc.max_budget} needs a schedule that does not "
                          f"depend on train.steps, but train.schedule is cosine{who}; use "
                          "constant or step, or frontier.max_budget: null")
    if fc.max_budget > tc.steps and tc.steps % tc.eval_every:
        raise ConfigError(f"frontier.max_budget: {fc.max_budget} needs train.steps ({tc.steps}) "
                          f"to be a multiple of train.eval_every ({tc.eval_every}){who}, so that "
                          "a probe continues exactly where it stopped")


def _validate_trials(cfg: ExperimentConfig) -> list[Trial]:
    """Every point of the sweep -- and, for a random search, first its probe points (every
    choice and both bounds of every range; an optuna search's points are its probe points)."""
    try:
        pts = list(points(cfg))
    except ValueError as e:  # a random search that found too few distinct points
        raise ConfigError(f"sweep.{e}") from None
    check_names(cfg, pts)
    probes = []
    if cfg.search.method == "random":
        base = base_raw(cfg)
        probes = [make_point(base, i, picks) for i, picks in enumerate(cfg.search.probes())]
    trials = _check_points(cfg, pts, probes, axis_labels(cfg))
    if cfg.search.method == "grid":  # random and optuna points are distinct draws
        check_distinct_models(trials)
    return trials


def _check_points(cfg: ExperimentConfig, pts: list[Point], probes: list[Point],
                  labels: dict[str, str]) -> list[Trial]:
    """Check ``probes`` and then ``pts`` (names, options, each built once); returns the
    trials of ``pts``."""
    for point in probes + pts:
        _check_names(cfg, point)
    _check_options(cfg, probes + pts)
    builder = _Builder()
    check = lambda p: builder.check(cfg, p)  # noqa: E731
    for point in probes:
        make_trial(point, check, labels, set())
    return trials_of(cfg, pts, check, labels)


def _validate(raw: dict) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e.errors()[0], fields_at)) from None


def _blame(cfg: ExperimentConfig, point: Point, msg: str) -> ConfigError:
    """Attribute a trial's ``path: problem`` message: to ``sweep.<key>[i]`` when the path is a
    swept key, to the point's label when the path's section is swept, else to the base config."""
    path, sep, rest = msg.partition(": ")
    related = lambda key: path == key or path.startswith(key + ".") or key.startswith(path + ".")  # noqa: E731
    for key, pick in point.picks.items():
        if is_group(key) and isinstance(pick.value, dict):
            for inner in pick.value:
                if sep and related(inner):
                    return ConfigError(f"{pick.where}.{inner}: {rest}")
        elif sep and related(key):
            return ConfigError(f"{pick.where}: {rest}")
    section = path.split(".")[0]
    if point.label and any(k.split(".")[0] == section for k in point.assignment):
        return ConfigError(f"{point.label}: {msg}")
    return ConfigError(msg)


def _check_sweep_keys(cfg: ExperimentConfig) -> None:
    for key, axis in cfg.search.axes.items():
        values = [p.value for p in axis.probes()]
        if is_group(key) and axis.is_choice and values and all(isinstance(v, dict) for v in values):
            _check_group(key, values, axis.where)
            continue
        _check_sweep_key(key, values, f"sweep.{key}")


def _check_group(key: str, values: list, base: str) -> None:
    """A grouped axis: a non-empty list of mappings of dotted keys (plus an optional ``name``);
    ``base``: where the list is (``sweep.<key>``, or ``sweep.<key>.choice``)."""
    if not values:
        raise ConfigError(f"{base}: empty list (give at least one value to sweep over)")
    labels = []
    for i, value in enumerate(values):
        where = f"{base}[{i}]"
        if not isinstance(value, dict) or not value:
            raise ConfigError(
                f"{where}: expected a mapping of dotted keys set together, e.g. "
                f"{{model.cell: rnn, train.learning_rate: 1.0e-3}}, got {value!r}"
            )
        for inner, v in value.items():
            if inner == "name":
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"{where}.name: expected a non-empty string, got {v!r}")
                continue
            _check_sweep_key(str(inner), [v], f"{where}.{inner}")
        labels.append(group_label(value))
    dupes = [v for v in labels if labels.count(v) > 1]
    if dupes:
        raise ConfigError(f"{base}: {dupes[0]!r} is listed twice")


def _check_sweep_key(key: str, values: list, path: str) -> None:
    """One swept dotted key: under a sweepable section, an existing field, a non-empty list."""
    parts = key.split(".")
    if parts[0] not in SWEEPABLE or len(parts) < 2:
        close = close_match(key, known_paths())
        hint = f" (did you mean sweep.{close}?)" if close else ""
        raise ConfigError(
            f"{path}: cannot sweep {key!r}; sweep keys are dotted paths under "
            f"{', '.join(SWEEPABLE)}, e.g. model.cell{hint}"
        )
    if not values:
        raise ConfigError(f"{path}: empty list (give at least one value to sweep over)")
    section, field = parts[0], parts[1]
    if section == "task":
        return  # task params are free-form; checked against the task's parameters
    fields = SECTIONS[section].model_fields
    if field not in fields:
        close = close_match(field, fields)
        prefix = path[: len(path) - len(key)] if path.endswith(key) else "sweep."
        hint = (f" (did you mean {prefix}{section}.{close}?)" if close else
                f"; {section} takes {', '.join(fields)}")
        raise ConfigError(f"{path}: unknown key{hint}")
    if len(parts) > 2 and field != "options":
        raise ConfigError(f"{path}: {section}.{field} has no sub-keys")


def _import_plugins(imports: Any) -> None:
    """``imports:``: import each module before anything is validated, so the cells and tasks
    they register are known (lstmjax._plugins)."""
    from lstmjax._plugins import PluginError, import_modules

    if imports is None:
        return
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, (list, tuple)):
        raise ConfigError(f"imports: expected a list of module names, got {type_name(imports)}")
    try:
        import_modules(imports)
    except PluginError as e:
        raise ConfigError(str(e)) from None


# where a name of your own comes from: said with every unknown cell or task
_PLUGIN_HINT = ("a cell or task of your own is known once the module that registers it is "
                "imported: `imports: [module]` in the config or `lstmjax run --import MODULE`")


def _check_names(cfg: ExperimentConfig, point: Point) -> None:
    """The point's cell and task names and task parameter names exist."""
    from lstmjax import cells, tasks

    model, task = point.raw.get("model", {}), point.raw.get("task", {})
    cell = model.get("cell")
    if not isinstance(cell, str):
        return  # a type error, reported by the trial's schema
    if cell not in cells.names():
        raise _blame(cfg, point, (
            f"model.cell: unknown cell {cell!r}{did_you_mean(cell, cells.names())}; "
            f"choose from {', '.join(cells.names())} ({_PLUGIN_HINT})"
        ))
    name = task.get("name")
    if not isinstance(name, str):
        return
    if name not in tasks.names():
        raise _blame(cfg, point, (
            f"task.name: unknown task {name!r}{did_you_mean(name, tasks.names())}; "
            f"choose from {', '.join(tasks.names())} ({_PLUGIN_HINT})"
        ))
    known = ["name", "length", *sorted(k for k in tasks.parameters(name)
                                         if k not in ("name", "length"))]
    for key in task:
        if key not in known:
            close = close_match(key, known)
            hint = f" (did you mean task.{close}?)" if close else ""
            raise _blame(cfg, point, f"task.{key}: unknown key{hint}; the task {name} takes "
                                     f"{', '.join(known)}")


def _check_options(cfg: ExperimentConfig, pts: list[Point]) -> None:
    """Every ``model.options`` entry must be an option of, and be accepted by, at least one cell
    of the sweep (each option reaches only the cells that take it, e.g. ``forget_bias`` the
    LSTMs); otherwise the first cell's own complaint is reported."""
    from lstmjax import cells

    names = list(dict.fromkeys(p.raw["model"]["cell"] for p in pts))
    known = sorted({o for n in names for o in cells.option_names(n)})
    which = f"cell {names[0]}" if len(names) == 1 else f"cells {', '.join(sorted(names))}"
    for point in pts:
        options = point.raw["model"].get("options")
        if not isinstance(options, dict):
            continue  # a type error, reported by the schema
        for key, value in options.items():
            path = f"model.options.{key}"
            swept = path in cfg.sweep
            prefix = "sweep." if swept else ""
            if key not in known:
                owners = [n for n in cells.names() if key in cells.option_names(n)]
                close = None if owners else close_match(key, known)
                hint = f" (did you mean {prefix}model.options.{close}?)" if close else ""
                if owners:
                    hint = f" ({key} is an option of {', '.join(owners)})"
                raise ConfigError(
                    f"{prefix}{path}: unknown option for {which}{hint}; "
                    f"valid options: {', '.join(known)}"
                )
            if any(cells.accepts(n, key, value) for n in names):
                continue
            owner = next(n for n in names if key in cells.option_names(n))
            try:
                cells.make(owner, hidden_size=1, **{key: hashable(value)})
                reason = "rejected"
            except (ValueError, TypeError) as e:
                reason = one_line(e)
            raise ConfigError(
                f"{prefix}{path}: {value!r} is not accepted by any cell of the sweep "
                f"({owner}: {reason})"
            )


class _Builder:
    """Validates each trial's schema and builds its cell and task, once per distinct build."""

    def __init__(self):
        self.built: dict[str, Any] = {}

    def check(self, cfg: ExperimentConfig, point: Point) -> ExperimentConfig:
        try:
            trial = ExperimentConfig.model_validate(point.raw)
        except ValidationError as e:
            raise _blame(cfg, point, format_validation_error(e.errors()[0], fields_at)) from None
        try:
            self._build_cell(trial.model)
            task = self._build_task(trial.task)
        except ConfigError as e:
            raise _blame(cfg, point, str(e)) from None
        if trial.eval is not None:
            for length in trial.eval.lengths:
                self._check_eval_length(trial, task, length)
        return trial

    def _check_eval_length(self, trial: ExperimentConfig, task, length: int) -> None:
        """The task at an evaluation length builds and feeds the same model."""
        t = trial.task.model_copy(update={"length": length})
        try:
            other = self._build_task(t)
        except ConfigError as e:
            raise ConfigError(f"eval.lengths: {length}: {str(e).partition(': ')[2]}") from None
        if (other.input_size, other.output_size) != (task.input_size, task.output_size):
            raise ConfigError(
                f"eval.lengths: {length}: {task.name} at length {length} has input/output sizes "
                f"{other.input_size}/{other.output_size}, not the trained model's "
                f"{task.input_size}/{task.output_size}; it cannot be evaluated there"
            )

    def _once(self, key: str, build):
        if key not in self.built:
            self.built[key] = build()
        return self.built[key]

    def _build_cell(self, model: ModelConfig):
        from lstmjax import cells

        key = repr(("cell", model.cell, model.hidden_size, sorted(model.options.items())))
        try:
            return self._once(key, lambda: cells.make(
                model.cell, hidden_size=model.hidden_size, **hashable(model.options)
            ))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model.options: {one_line(e)}") from None

    def _build_task(self, task: TaskConfig):
        from lstmjax import tasks

        params = hashable(task.params)
        key = repr(("task", task.name, task.length, sorted(params.items())))
        try:
            return self._once(key, lambda: tasks.make(task.name, length=task.length, **params))
        except (ValueError, TypeError) as e:
            msg = one_line(e)
            # name the parameter when the task's message does ("adding: length=1 is out of range")
            named = [k for k in ("length", *task.params) if re.search(rf"\b{k}=", msg)]
            path = f"task.{named[0]}" if len(named) == 1 else "task"
            raise ConfigError(f"{path}: {msg}") from None


def fields_at(loc: tuple) -> list[str]:
    """The schema's field names at a location, e.g. ``("train",)`` -> TrainConfig's fields."""
    model: Any = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = field.annotation
        # `X | None`: the model inside
        model = next((a for a in typing.get_args(model) if hasattr(a, "model_fields")), model)
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def known_paths() -> list[str]:
    """Every sweepable dotted key of the schema (``task.length``, ``model.cell``, …)."""
    return [f"{s}.{f}" for s in SWEEPABLE for f in SECTIONS[s].model_fields]
