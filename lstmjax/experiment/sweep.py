"""Sweep expansion: the cartesian product of ``sweep`` values, one named trial per point.

A trial's name is built from its swept values, ``<key>-<value>`` joined by ``__`` in sweep
order, where ``<key>`` is the last component of the dotted key (the full dotted key if two swept
keys share a last component)::

    sweep: {model.cell: [rnn, lstm], task.length: [25, 50]}
    -> cell-rnn__length-25, cell-rnn__length-50, cell-lstm__length-25, cell-lstm__length-50

Two values that give the same name (``a/b`` and ``a-b``; ``0.1`` and ``"0.1"``) would share a
directory: :func:`check_names` refuses them when the config is loaded. With no sweep the single
trial is called ``default``. A name longer than 120 characters is cut
to its first 100 and a hash of the whole (``…__h1a2b3c4d5e``): directory names stay well within
the 255-byte limit, and the full values are in the trial's ``config.yaml`` and ``summary.json``.
Each trial's ``model.options`` keep only the options its cell takes
(:func:`lstmjax.cells.applicable_options`): this is the one place where a shared options block
is filtered.

``sweep.method: random`` expands into its ``num_trials`` drawn points, named the same way
(:mod:`lstmjax.experiment.space`); ``sweep.method: optuna`` expands into the search space's
probe points (every choice and bound), which the loader validates and the runner sizes memory
by; the trials themselves are proposed while the study runs (:mod:`lstmjax.experiment.search`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.space import Pick

__all__ = [
    "Trial", "Point", "expand", "points", "trials_of", "trial_name", "format_value", "swept_keys",
    "GAP_KEY", "check_names",
]  # fmt: skip

GAP_KEY = "task.length"
MAX_TRIAL_NAME = 120


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of a sweep: its name, its values for the swept keys (a grouped axis's value is
    its ``name``, or its mapping), its full config, and ``assignment``: every dotted key the
    sweep set (grouped axes flattened). ``gap_key`` is the key plotted as the gap."""

    index: int
    name: str
    values: dict[str, Any]
    cfg: ExperimentConfig
    assignment: dict[str, Any] = dataclasses.field(default_factory=dict)
    gap_key: str = GAP_KEY

    @property
    def variant(self) -> str:
        """Label of the swept values other than the gap (``task.length``)."""
        gap_keys = {self.gap_key, GAP_KEY}
        return variant_label({k: v for k, v in self.values.items() if k not in gap_keys},
                             self.cfg)

    @property
    def gap(self) -> Any:
        """The value of ``gap_key`` in this trial's config."""
        node: Any = self.cfg.model_dump()
        for part in self.gap_key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and self.gap_key.startswith("task."):
            node = self.cfg.task.params.get(self.gap_key.split(".", 1)[1])
        return node


def is_group(key: str) -> bool:
    """A sweep key without a dot is a grouped axis (its values set several keys together)."""
    return "." not in key


def group_label(value: Any) -> Any:
    """What names a grouped axis's value: its ``name``, else the mapping itself."""
    if isinstance(value, dict) and "name" in value:
        return value["name"]
    return value


def swept_keys(cfg: ExperimentConfig) -> list[str]:
    """Every dotted key the sweep sets, grouped axes flattened, in sweep order."""
    keys: dict[str, None] = {}
    for key, axis in cfg.search.axes.items():
        if is_group(key):
            for value in axis.values if axis.is_choice else ():
                keys.update({k: None for k in (value if isinstance(value, dict) else {})
                             if k != "name"})
        else:
            keys[key] = None
    return list(keys)


@dataclasses.dataclass(frozen=True)
class Point:
    """A point of the sweep before validation: ``values`` of the swept keys, ``positions``
    (index of each value in its sweep list, for the keys that have one), ``assignment`` (the
    dotted keys it sets), ``raw``, the trial's plain dict (no sweep, options not yet filtered),
    and ``picks``: per swept key, its value and where in the config it comes from."""

    index: int
    values: dict[str, Any]
    positions: dict[str, int]
    raw: dict
    assignment: dict[str, Any] = dataclasses.field(default_factory=dict)
    picks: dict[str, Pick] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str | None:
        """``sweep model.cell='rnn', task.length=25`` (None without a sweep)."""
        if not self.values:
            return None
        return "sweep " + ", ".join(f"{k}={v!r}" for k, v in self.values.items())


def points(cfg: ExperimentConfig) -> Iterator[Point]:
    """Every point of ``cfg``'s sweep: the grid in product order (last key fastest), the draws
    of a random search in the order drawn, the probe points of an optuna search."""
    space = cfg.search
    if space.method == "grid":
        chosen = space.grid()
    else:
        chosen = space.sample() if space.method == "random" else space.probes()
    base = base_raw(cfg)
    for index, picks in enumerate(chosen):
        yield make_point(base, index, picks)


def base_raw(cfg: ExperimentConfig) -> dict:
    """``cfg`` as a plain dict without its sweep: what every point starts from."""
    base = cfg.model_dump(mode="json")
    base["sweep"] = {}
    return base


def make_point(base: dict, index: int, picks: dict[str, Pick]) -> Point:
    """The point that sets each swept key to its pick (a grouped axis: its mapping's keys)."""
    values, assignment = {}, {}
    for k, pick in picks.items():
        value = pick.value
        if is_group(k):
            values[k] = group_label(value)
            if isinstance(value, dict):
                assignment.update({dk: dv for dk, dv in value.items() if dk != "name"})
        else:
            values[k] = value
            assignment[k] = value
    positions = {k: p.position for k, p in picks.items() if p.position is not None}
    return Point(index, values, positions, with_values(base, assignment), assignment, picks)


def expand(
    cfg: ExperimentConfig, validate: Callable[[Point], ExperimentConfig] | None = None
) -> list[Trial]:
    """The trials of ``cfg``'s sweep (:func:`points`): the grid in product order (last key
    fastest), a random search's draws in the order drawn.

    Each trial's config has no sweep, and its ``model.options`` keep only what its cell takes.
    ``validate(point)`` turns a point (options filtered) into its config; the default is the
    schema alone (``cfg`` was validated as a whole when it was loaded).
    """
    return trials_of(cfg, points(cfg), validate)


def trials_of(cfg: ExperimentConfig, pts,
              validate: Callable[[Point], ExperimentConfig] | None = None,
              labels: dict[str, str] | None = None) -> list[Trial]:
    """The trials of ``pts``, points of ``cfg``'s sweep already generated (:func:`expand`
    without generating them again); ``labels``: of the keys in their names, if not the
    sweep's (:func:`axis_labels`)."""
    validate = validate or (lambda p: ExperimentConfig.model_validate(p.raw))
    labels = axis_labels(cfg) if labels is None else labels
    trials, seen = [], set()
    for point in pts:
        trials.append(make_trial(point, validate, labels, seen))
    return trials


def make_trial(point: Point, validate: Callable[[Point], ExperimentConfig],
               labels: dict[str, str], seen: set[str]) -> Trial:
    """The trial of ``point`` (options filtered to its cell), named from its values; a name in
    ``seen`` gets ``__<index>`` appended, and the name is added to ``seen``."""
    from lstmjax import cells

    model = point.raw["model"]
    if model.get("cell") in cells.names() and isinstance(model.get("options"), dict):
        model["options"] = cells.applicable_options(model["cell"], model["options"])
    trial_cfg = validate(point)
    name = trial_name(point.values, labels)
    if name in seen:  # two values that print alike, e.g. 0.1 and "0.1"
        name = f"{name}__{point.index}"
    seen.add(name)
    return Trial(point.index, name, point.values, trial_cfg, point.assignment)


def axis_labels(cfg: ExperimentConfig, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The short label of each swept key (and of ``extra`` keys) in trial names."""
    return _short_keys([*cfg.search.axes, *extra])


def with_values(raw: dict, assignment: dict[str, Any]) -> dict:
    """A deep copy of ``raw`` with dotted keys set (``{"task.length": 50}``)."""
    out = copy.deepcopy(raw)
    for key, value in assignment.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def trial_name(values: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """``{"model.cell": "lstm", "task.length": 100}`` -> ``cell-lstm__length-100``."""
    if not values:
        return "default"
    labels = labels or _short_keys(list(values))
    name = "__".join(f"{labels[k]}-{_slug(format_value(v))}" for k, v in values.items())
    if len(name) > MAX_TRIAL_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:100]}__h{digest}"
    return name


def check_names(cfg: ExperimentConfig, pts: list[Point] = (),
                extra: dict[str, Any] | None = None) -> None:
    """Refuse two values that would share a trial directory: first two values of one list or
    choice axis that print alike in a trial name (shown with the other axes at their first
    values), then two of ``pts`` whose trial names are the same. ``extra``: keys set on every
    trial beside the sweep (a frontier's gap). Raises a one-line :class:`ConfigError`."""
    extra = extra or {}
    labels = axis_labels(cfg, tuple(extra))
    axes = cfg.search.axes
    firsts = {k: group_label(a.probes()[0].value) for k, a in axes.items()}
    for key, axis in axes.items():
        first: dict[str, Pick] = {}
        for i in range(len(axis.values) if axis.is_choice else 0):
            pick = axis.pick(i)
            part = trial_name({key: group_label(pick.value)}, labels)
            if part in first:
                a, b = group_label(first[part].value), group_label(pick.value)
                name = trial_name({**firsts, key: b, **extra}, labels)
                raise ConfigError(_clash(f"sweep.{key}", f"{a!r} ({first[part].where})",
                                         f"{b!r} ({pick.where})", name, a, b))
            first[part] = pick
    seen: dict[str, Point] = {}
    for point in pts:
        name = trial_name({**point.values, **extra}, labels)
        other = seen.setdefault(name, point)
        if other is point:
            continue
        keys = [k for k in point.values
                if (other.positions.get(k), other.values[k], type(other.values[k]))
                != (point.positions.get(k), point.values[k], type(point.values[k]))]
        if len(keys) == 1:
            (k,) = keys
            a, b = other.values[k], point.values[k]
            raise ConfigError(_clash(f"sweep.{k}", repr(a), repr(b), name, a, b))
        a, b = ("{" + ", ".join(f"{k}={p.values[k]!r}" for k in keys) + "}"
                for p in (other, point))
        raise ConfigError(_clash("sweep", a, b, name, None, None))


def _clash(path: str, a: str, b: str, name: str, va: Any, vb: Any) -> str:
    why = ""
    if va is not None and not isinstance(va, dict) and not isinstance(vb, dict):
        why = (" (they print alike)" if format_value(va) == format_value(vb) else
               " (characters other than letters, digits and _.+=,- become -)")
    return (f"{path}: {a} and {b} both map to the trial directory name {name!r}{why}; "
            "rename or change one of them")


def variant_label(values: dict[str, Any], cfg: ExperimentConfig) -> str:
    """``lstm`` for a sweep over cells only; ``cell=lstm, learning_rate=0.001`` otherwise."""
    if not values:
        return cfg.model.cell
    if len(values) == 1:
        return format_value(next(iter(values.values())))
    labels = _short_keys(list(values))
    return ", ".join(f"{labels[k]}={format_value(v)}" for k, v in values.items())


def format_value(value: Any) -> str:
    """Short text for a swept value (``0.001``, ``true``, ``i+o``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def _short_keys(keys: list[str]) -> dict[str, str]:
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=,-]", "-", text) or "none"
