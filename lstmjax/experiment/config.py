"""Loading experiment configs: YAML -> ``--set`` overrides -> validated, frozen config.

    cfg = load_config("configs/quickstart.yaml", overrides=["train.steps=200"])

Every problem raises :class:`ConfigError` whose message is one line, ``key.path: problem``,
naming the bad value and what was expected, with a did-you-mean for misspelt keys and names.
Validation is one pass (:func:`from_dict`): the schema (:mod:`.schema`), then the sweep is
expanded and each trial's cell and task are built once, so a config that loads is a config
that runs. The schema and its defaults are documented in :mod:`lstmjax.experiment.schema`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

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
    OutputConfig,
    TaskConfig,
    TrainConfig,
    fields_at,
    known_paths,
)
from lstmjax.experiment.space import Pick
from lstmjax.experiment.sweep import (
    Point,
    Trial,
    axis_labels,
    base_raw,
    check_names,
    expand,
    group_label,
    is_group,
    make_point,
    make_trial,
    points,
    swept_keys,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "TaskConfig",
    "ModelConfig",
    "TrainConfig",
    "OutputConfig",
    "load_config",
    "from_dict",
    "load_trials",
    "trial_at",
    "to_dict",
    "dump_yaml",
    "parse_override",
    "apply_overrides",
]


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------


MAX_CONFIG_BYTES = 1 << 20  # a config file (or --set value) larger than 1 MB is refused
MAX_ALIASES = 1000  # YAML aliases (*ref) per document
MAX_NODES = 100_000  # values in the document once aliases are expanded


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.1 needs ``3.0e-4``), rejects
    duplicate keys, supports merge keys (``<<: *base``) and caps aliases ("billion laughs")."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name)", mark
                )
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` -- merged keys may be overridden by the explicit ones
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text)} characters is larger than the 1 MB limit")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    _check_expanded_size(data, source)
    return data


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuse documents whose aliases expand to more than MAX_NODES values (shared objects are
    counted at every place they appear, as validation and copies would see them)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(
                f"{source}: the document expands to more than {MAX_NODES} values "
                "(YAML aliases nested in aliases?)"
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def dump_yaml(data: dict) -> str:
    """YAML text for a plain dict (keys in insertion order)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def to_dict(cfg: BaseModel) -> dict:
    """A plain, YAML/JSON-ready dict of a config (seeds as a list)."""
    return cfg.model_dump(mode="json")


# ----------------------------------------------------------------------------------------------
# Loading and overrides
# ----------------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                imports: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply ``key=value`` overrides, validate.
    ``imports``: modules imported first, added to the config's own ``imports:`` (and so
    recorded in the run); ``lstmjax run --import MODULE``.

    Override values are read as YAML (``3e-4``, ``[lstm, gru]``, ``{}``); ``sweep.<key>=[...]``
    sets a sweep entry, and overriding a swept key (``model.cell=lstm``) pins it, removing it
    from the sweep. ``name`` defaults to the file's stem. Raises :class:`ConfigError`.
    """
    path = Path(path)
    text = _read_config_file(path)
    raw = _parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: empty config (expected a mapping with at least `task`)")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections "
            f"(name, task, model, train, sweep, output), got {type_name(raw)}"
        )
    derived = "name" not in raw
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides)
    if imports:
        own = raw.get("imports") or []
        own = [own] if isinstance(own, str) else list(own) if isinstance(own, list) else own
        if isinstance(own, list):
            raw["imports"] = own + [m for m in imports if m not in own]
    try:
        return from_dict(raw)
    except ConfigError as e:
        if derived and raw.get("name") == path.stem and str(e).startswith("name: "):
            raise ConfigError(
                f"{e} -- the name comes from the file name {path.name!r}; "
                "set `name:` in the config or rename the file"
            ) from None
        raise


def _read_config_file(path: Path) -> str:
    """The file's text: a regular file of at most 1 MB of UTF-8 (not a device, FIFO, directory)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(f"{path}: cannot read config ({why})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: cannot read config (IsADirectoryError)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file (a config must be a YAML file)")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size} bytes is larger than the {MAX_CONFIG_BYTES} byte limit "
            "for a config file"
        )
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        return data.decode("utf-8")
    except (PermissionError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: cannot read config ({type(e).__name__})") from None


def apply_overrides(raw: dict, overrides) -> dict:
    """``raw`` with ``key=value`` overrides applied in place (see :func:`load_config`)."""
    for item in overrides:
        _set_override(raw, *parse_override(item))
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.learning_rate=3e-4"`` -> ``("train.learning_rate", 3e-4)`` (value read as YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
        shown = item if item.isprintable() else repr(item)
        raise ConfigError(
            f"--set {shown}: expected key=value with a dotted key, "
            "e.g. train.learning_rate=3e-4"
        )
    return key, _parse_yaml(text, f"--set {key}") if text.strip() else ""


def _set_override(raw: dict, key: str, value: Any) -> None:
    """Set a dotted key; overriding a swept key pins it (removes it from the sweep)."""
    parts = key.split(".")
    if parts[0] == "sweep" and len(parts) > 1:
        parts = ["sweep", ".".join(parts[1:])]
    elif isinstance(raw.get("sweep"), dict):
        raw["sweep"].pop(key, None)
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: cannot set {key}: {where} is not a mapping")
        node = child
    node[parts[-1]] = value


# ----------------------------------------------------------------------------------------------
# Validation: schema -> expand the sweep -> build each trial once
# ----------------------------------------------------------------------------------------------


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
    probe = cfg.model_copy(update={"sweep": {**cfg.sweep, key: [fc.start, fc.max]},
                                   "frontier": None})
    try:
        _validate_trials(probe)
    except ConfigError as e:
        msg = str(e)
        for i, (name, gap) in enumerate((("start", fc.start), ("max", fc.max))):
            msg = msg.replace(f"sweep.{key}[{i}]:", f"frontier.{name}: {key}={gap}:")
        raise ConfigError(msg) from None
    return expand(cfg)


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
    for point in probes + pts:
        _check_names(cfg, point)
    _check_options(cfg, probes + pts)
    builder = _Builder()
    check = lambda p: builder.check(cfg, p)  # noqa: E731
    labels = axis_labels(cfg)
    for point in probes:
        make_trial(point, check, labels, set())
    trials = expand(cfg, validate=check)
    if cfg.search.method == "grid":  # random and optuna points are distinct draws
        check_distinct_models(trials)
    return trials


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
