"""A sweep's search space: its method and settings, its axes, random draws and probe points.

    sweep: {model.cell: [rnn, lstm], task.length: [25, 50]}   # grid: the cartesian product

    sweep:
      method: random                  # grid (default) | random | optuna
      num_trials: 20                  # random, optuna: how many trials
      seed: 0                         # random, optuna: the sampler's seed (default 0)
      train.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
      model.options.forget_bias: {uniform: [0.0, 2.0]}
      model.hidden_size: {int: [16, 64]}                # inclusive
      model.cell: [lstm, gru]                           # a list is a choice; {choice: [...]} too

    sweep: {method: optuna, num_trials: 30, objective: median_final_loss, direction: minimize,
            ...}                      # direction: default the objective's natural one
    sweep: {method: optuna, ..., pruner: {name: median, n_startup_trials: 2}}  # or pruner: median

``objective``/``direction`` rank a random search's leaderboard too (default there:
``solved_fraction``, maximised). ``pruner`` (optuna only; default ``none``) stops a trial at an
evaluation whose intermediate objective is poor: ``median``, ``successive_halving`` or
``hyperband``, with optuna's own settings beside ``name`` (:data:`PRUNERS`; steps are training
steps).

A distribution may also be written ``{distribution: loguniform, low: 1.0e-4, high: 1.0e-2}``
(``{distribution: choice, values: [...]}``). ``method``, ``num_trials``, ``seed``,
``objective``, ``direction`` and ``pruner`` are reserved: they cannot name a grouped axis.

Random search draws ``num_trials`` distinct points with ``numpy.random.default_rng(seed)``, trial
after trial and axis after axis in sweep order (so the first trials of a longer search are the
trials of a shorter one). Numbers drawn from ``uniform``/``loguniform`` are rounded to
:data:`DIGITS` significant digits -- the value trained and the value in the trial's name are
the same. Every value is validated like a grid value: each choice, and both bounds of each range
(the *probe points*, :meth:`SearchSpace.probes`), plus, for random search, every point drawn.

Limits: a grid has at most :data:`MAX_TRIALS` (100000) points -- the product of its axes'
lengths, checked before anything is expanded -- and ``num_trials`` is at most that too. A random
search whose ranges cannot give ``num_trials`` distinct points once rounded (``uniform: [1.0,
1.0001]`` holds one 4-digit number) is refused up front (:meth:`Axis.distinct`), as is a
``uniform`` range whose width overflows float64 or an ``int`` range beyond int64.

This module is a leaf (pure functions of the sweep mapping); the optuna driver is
:mod:`lstmjax.experiment.search`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

from lstmjax._util import close_match
from lstmjax.experiment.draws import DIGITS, log_cells, round_value, uniform_cells
from lstmjax.experiment.errors import did_you_mean
from lstmjax.experiment.pruners import PRUNERS, parse_pruner

__all__ = [
    "RESERVED", "METHODS", "DISTRIBUTIONS", "OBJECTIVES", "PRUNERS", "DIGITS", "Pick", "Axis",
    "SearchSpace", "parse", "round_value",
]  # fmt: skip

RESERVED = ("method", "num_trials", "seed", "objective", "direction", "pruner")
METHODS = ("grid", "random", "optuna")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
# TrialSummary statistics a search can optimise, with their natural direction; a trial without
# the statistic (no seed solved, every seed diverged) counts as the worst value
OBJECTIVES = {
    "solved_fraction": "maximize",
    "solved_seeds": "maximize",
    "median_steps_to_solve": "minimize",
    "median_final_loss": "minimize",
    "diverged_seeds": "minimize",
    "blew_up_seeds": "minimize",
}
DIRECTIONS = ("maximize", "minimize")
MAX_TRIALS = 100_000  # points of a grid, num_trials of a random or optuna search
_INT64 = 2**63
MAX_PROBES = 256  # more probe points than this: one axis varied at a time
_SEED_LIMIT = 2**32


class Pick(NamedTuple):
    """One axis's value at a point: the value, where it comes from (for error messages, e.g.
    ``sweep.model.cell[1]``) and its position in the axis's list (None if drawn from a range)."""

    value: Any
    where: str
    position: int | None


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept key: ``kind`` ``list`` (a YAML list: the grid's values, or a choice) or
    ``choice``/``uniform``/``loguniform``/``int`` (a distribution); ``values`` the choices or
    ``(low, high)``; ``where`` the path of the values in the config."""

    key: str
    kind: str
    values: tuple
    where: str
    long_form: bool = False  # {distribution: ..., low: ..., high: ...}

    @property
    def is_choice(self) -> bool:
        return self.kind in ("list", "choice")

    def pick(self, i: int) -> Pick:
        """The ``i``-th value of a list or choice."""
        return Pick(self.values[i], f"{self.where}[{i}]", i)

    def bound(self, j: int) -> Pick:
        """The low (``j=0``) or high (``j=1``) bound of a range."""
        where = f"{self.where}.{('low', 'high')[j]}" if self.long_form else f"{self.where}[{j}]"
        return Pick(self.values[j], where, None)

    def probes(self) -> list[Pick]:
        """Every choice, or both bounds of a range."""
        if self.is_choice:
            return [self.pick(i) for i in range(len(self.values))]
        return [self.bound(0), self.bound(1)]

    def size(self) -> int | None:
        """How many distinct values the axis has (None for a continuous range)."""
        if self.is_choice:
            return len(self.values)
        if self.kind == "int":
            return self.values[1] - self.values[0] + 1
        return None

    def distinct(self, draws: int) -> float:
        """An upper bound on the expected number of distinct values ``draws`` draws give:
        ``sum(min(1, p * draws))`` over the values, ``p`` the chance of drawing each (a range's
        values are the numbers of :data:`DIGITS` significant digits in it, plus its bounds,
        where rounding may clamp a draw)."""
        if self.kind != "uniform" and self.kind != "loguniform":
            return float(min(self.size(), draws))
        low, high = self.values
        if self.kind == "loguniform":
            cells = log_cells(low, high, draws)
        else:
            cells = sum(uniform_cells(a, b, high - low, draws)
                        for a, b in ((max(low, 0.0), high), (max(-high, 0.0), -low)) if a < b)
        # a draw that rounds outside the range is clamped to the bound: one more value each
        rounded = float(f"{low:.{DIGITS - 1}e}"), float(f"{high:.{DIGITS - 1}e}")
        cells += (rounded[0] < low) + (rounded[1] > high)
        return min(cells, float(draws))

    def draw(self, rng) -> Pick:
        """A value drawn with the NumPy Generator ``rng``."""
        if self.is_choice:
            return self.pick(int(rng.integers(len(self.values))))
        low, high = self.values
        if self.kind == "int":
            return Pick(int(rng.integers(low, high, endpoint=True)), self.where, None)
        if self.kind == "loguniform":
            x = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            x = float(rng.uniform(low, high))
        return Pick(round_value(x, low, high), self.where, None)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A parsed ``sweep``: the method, its settings and the axes (in sweep order)."""

    method: str = "grid"
    num_trials: int | None = None
    seed: int = 0
    objective: str | None = None
    direction: str | None = None
    axes: dict[str, Axis] = dataclasses.field(default_factory=dict)
    pruner: str = "none"  # optuna: PRUNERS
    pruner_settings: tuple[tuple[str, Any], ...] = ()  # (setting, value), the given ones

    def grid(self) -> Iterator[dict[str, Pick]]:
        """Every point of the cartesian product (last axis fastest)."""
        axes = list(self.axes.values())
        for combo in itertools.product(*[range(len(a.values)) for a in axes]):
            yield {a.key: a.pick(i) for a, i in zip(axes, combo, strict=True)}

    def sample(self) -> list[dict[str, Pick]]:
        """``num_trials`` distinct random points; the same for the same ``seed``."""
        import numpy as np

        rng = np.random.default_rng(self.seed)
        out, seen = [], set()
        for _ in range(100 * self.num_trials + 1000):
            point = {a.key: a.draw(rng) for a in self.axes.values()}
            ident = identity(point)
            if ident not in seen:
                seen.add(ident)
                out.append(point)
                if len(out) == self.num_trials:
                    return out
        raise ValueError(f"num_trials: could not draw {self.num_trials} distinct points "
                         f"(only {len(out)} in {100 * self.num_trials + 1000} draws); lower "
                         "sweep.num_trials or widen the ranges")

    def probes(self) -> list[dict[str, Pick]]:
        """The probe points: every combination of every axis's choices and bounds -- or, when
        there are more than :data:`MAX_PROBES` of them, each axis's choices and bounds with the
        other axes at their first."""
        axes = list(self.axes.values())
        options = [a.probes() for a in axes]
        if math.prod(len(o) for o in options) <= MAX_PROBES:
            return [{a.key: p for a, p in zip(axes, combo, strict=True)}
                    for combo in itertools.product(*options)]
        first = {a.key: o[0] for a, o in zip(axes, options, strict=True)}
        out = [first]
        for a, o in zip(axes, options, strict=True):
            out += [{**first, a.key: p} for p in o[1:]]
        return out

    def size(self) -> int | None:
        """How many distinct points the space has (None if an axis is continuous)."""
        sizes = [a.size() for a in self.axes.values()]
        return None if None in sizes else math.prod(sizes)


def identity(point: dict[str, Pick]) -> tuple:
    """What makes two points the same point (a choice by its position, a number by value)."""
    return tuple((k, p.position if p.position is not None else p.value) for k, p in point.items())


# ---- parsing ---------------------------------------------------------------------------------


def parse(sweep: dict) -> SearchSpace:
    """The :class:`SearchSpace` of a ``sweep`` mapping; ``ValueError("key.path: problem")``
    (the path below ``sweep``) for a bad spec."""
    method = sweep.get("method", "grid")
    if isinstance(method, list):
        _reserved("method")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}"
                         f"{did_you_mean(method, METHODS)}")
    settings: dict[str, Any] = {"method": method}
    for key in RESERVED[1:]:
        if key not in sweep:
            continue
        value = sweep[key]
        if isinstance(value, list):
            _reserved(key)
        if method == "grid" or (key == "pruner" and method != "optuna"):
            needs = "optuna" if key == "pruner" else "random or optuna"
            raise ValueError(f"{key}: only used by sweep.method {needs} "
                             f"(this sweep's method is {method})")
        if key == "pruner":
            settings["pruner"], settings["pruner_settings"] = parse_pruner(value)
            continue
        settings[key] = _setting(key, value)
    axes = {}
    for key, value in sweep.items():
        if key in RESERVED:
            continue
        axes[key] = _axis(key, value, method)
    if method != "grid":
        _check_method_settings(method, settings, axes)
    else:
        _check_grid(axes)
    return SearchSpace(**settings, axes=axes)


def _check_grid(axes: dict[str, Axis]) -> None:
    """A grid's size is the product of its axes' lengths, computed before anything is
    expanded: more than :data:`MAX_TRIALS` points is refused."""
    size = math.prod(len(a.values) for a in axes.values())
    if size > MAX_TRIALS:
        lengths = " x ".join(str(len(a.values)) for a in axes.values())
        raise ValueError(
            f"a grid of {size} trials ({lengths} values) is more than the limit of "
            f"{MAX_TRIALS} trials; sweep fewer values, or sample the grid with method random "
            "and num_trials")


def _reserved(key: str) -> None:
    raise ValueError(
        f"{key}: {key!r} is a reserved key of the sweep ({', '.join(RESERVED)} are the "
        "search's settings) and cannot name a grouped axis; give the axis another name"
    )


def _setting(key: str, value: Any) -> Any:
    if key == "num_trials":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"num_trials: expected an integer >= 1, got {value!r}")
        if value > MAX_TRIALS:
            raise ValueError(f"num_trials: {value} is more than the limit of {MAX_TRIALS}")
        return value
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _SEED_LIMIT:
            raise ValueError(f"seed: expected an integer in [0, 2^32), got {value!r}")
        return value
    if key == "objective":
        if not isinstance(value, str) or value not in OBJECTIVES:
            raise ValueError(f"objective: unknown metric {value!r}"
                             f"{did_you_mean(value, OBJECTIVES)}; choose from "
                             f"{', '.join(OBJECTIVES)}")
        return value
    if not isinstance(value, str) or value not in DIRECTIONS:  # direction
        raise ValueError(f"direction: {value!r} is not one of {', '.join(DIRECTIONS)}"
                         f"{did_you_mean(value, DIRECTIONS)}")
    return value


def _check_method_settings(method: str, settings: dict, axes: dict[str, Axis]) -> None:
    if "num_trials" not in settings:
        raise ValueError(f"num_trials: required key missing (sweep.method {method} runs that "
                         "many trials)")
    if method == "optuna" and "objective" not in settings:
        raise ValueError(f"objective: required key missing (what sweep.method optuna "
                         f"optimises: one of {', '.join(OBJECTIVES)})")
    if "objective" in settings:
        settings.setdefault("direction", OBJECTIVES[settings["objective"]])
    elif "direction" in settings:
        raise ValueError(f"direction: given without sweep.objective (the statistic to "
                         f"{settings['direction']}: one of {', '.join(OBJECTIVES)})")
    if not axes:
        raise ValueError(f"method: {method} needs at least one key to search besides "
                         f"{', '.join(RESERVED)}")
    size = SearchSpace(axes=axes).size()
    if size is not None and size < settings["num_trials"]:
        raise ValueError(f"num_trials: {settings['num_trials']} is more than the {size} "
                         "distinct points of the search space (sweep.method grid runs them all)")
    if method == "random" and size is None:
        _check_drawable(settings["num_trials"], axes)


def _check_drawable(num_trials: int, axes: dict[str, Axis]) -> None:
    """Random search draws until it has ``num_trials`` distinct points, at most
    ``100 * num_trials + 1000`` draws: refuse up front a space whose rounded ranges cannot give
    that many (:meth:`Axis.distinct` bounds what those draws can find)."""
    draws = 100 * num_trials + 1000
    found = {k: a.distinct(draws) for k, a in axes.items()}
    if math.prod(found.values()) >= num_trials:
        return
    key = min((k for k, a in axes.items() if not a.is_choice and a.kind != "int"),
              key=found.get)
    axis = axes[key]
    low, high = axis.values
    total = f" (about {math.prod(found.values()):.0f} points in all)" if len(axes) > 1 else ""
    raise ValueError(
        f"num_trials: {num_trials} distinct points cannot be drawn: draws are rounded to "
        f"{DIGITS} significant digits, and {axis.where} [{low!r}, {high!r}] gives about "
        f"{found[key]:.0f} distinct value{'' if round(found[key]) == 1 else 's'}{total}; widen "
        "its range or lower num_trials")


def _axis(key: str, value: Any, method: str) -> Axis:
    where = f"sweep.{key}"
    if isinstance(value, list):
        return Axis(key, "list", tuple(value), where)
    if "." not in key and key not in RESERVED:
        close = close_match(key, RESERVED)
        if close and not isinstance(value, dict):
            raise ValueError(f"{key}: unknown key (did you mean sweep.{close}?)")
    if method == "grid":
        if isinstance(value, dict) and ("distribution" in value or set(value) & set(DISTRIBUTIONS)):
            raise ValueError(f"{key}: a distribution needs sweep.method random or optuna "
                             "(a grid sweeps a list of values)")
        raise ValueError(f"{key}: expected a non-empty list of values to sweep over, got {value!r}")
    if not isinstance(value, dict):
        raise ValueError(
            f"{key}: expected a list of values or a distribution ({{choice: [...]}}, "
            f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}, {{int: [low, high]}}), "
            f"got {value!r}"
        )
    if "distribution" in value:
        return _long_form(key, value)
    if len(value) != 1:
        raise ValueError(f"{key}: expected one distribution, e.g. {{loguniform: [1.0e-4, "
                         f"1.0e-2]}}, got the keys {', '.join(map(str, value))}")
    ((name, args),) = value.items()
    _known(key, name)
    path = f"{key}.{name}"
    if name == "choice":
        return Axis(key, "choice", _choices(path, args), f"{where}.choice")
    if not isinstance(args, list) or len(args) != 2:
        raise ValueError(f"{path}: expected [low, high], got {args!r}")
    return Axis(key, name, _bounds(path, name, *args), f"{where}.{name}")


def _long_form(key: str, value: dict) -> Axis:
    name = value["distribution"]
    _known(key, name, f"{key}.distribution")
    allowed = ("distribution", "values") if name == "choice" else ("distribution", "low", "high")
    for k in value:
        if k not in allowed:
            close = close_match(k, allowed)
            hint = f" (did you mean sweep.{key}.{close}?)" if close else ""
            raise ValueError(f"{key}.{k}: unknown key{hint}")
    for k in allowed[1:]:
        if k not in value:
            raise ValueError(f"{key}.{k}: required key missing")
    if name == "choice":
        return Axis(key, "choice", _choices(f"{key}.values", value["values"]),
                    f"sweep.{key}.values")
    return Axis(key, name, _bounds(key, name, value["low"], value["high"]), f"sweep.{key}",
                long_form=True)


def _known(key: str, name: Any, path: str | None = None) -> None:
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise ValueError(f"{path or key}: unknown distribution {name!r}"
                         f"{did_you_mean(name, DISTRIBUTIONS)}; use choice, uniform, "
                         "loguniform or int")


def _choices(path: str, args: Any) -> tuple:
    if not isinstance(args, list):
        raise ValueError(f"{path}: expected a list of values to choose from, got {args!r}")
    if not args:
        raise ValueError(f"{path}: empty list (give at least one value to choose from)")
    return tuple(args)


def _bounds(path: str, name: str, low: Any, high: Any) -> tuple:
    for b in (low, high):
        if name == "int":
            if isinstance(b, bool) or not isinstance(b, int):
                raise ValueError(f"{path}: int bounds must be integers, got [{low!r}, {high!r}]")
            if not -_INT64 <= b < _INT64:
                raise ValueError(f"{path}: int bounds must fit in 64 bits (-2^63 to 2^63-1), "
                                 f"got [{low!r}, {high!r}]; narrow the range")
        elif isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise ValueError(f"{path}: bounds must be finite numbers, got [{low!r}, {high!r}]")
    if low >= high:
        raise ValueError(f"{path}: low {low!r} must be smaller than high {high!r}")
    if name == "loguniform" and low <= 0:
        raise ValueError(f"{path}: low must be > 0 on a log scale, got {low!r}")
    if name == "uniform" and not math.isfinite(float(high) - float(low)):
        raise ValueError(f"{path}: the range [{low!r}, {high!r}] is too wide to draw from (high "
                         "- low overflows float64); narrow it so high - low is below 1.7e308")
    return (low, high) if name == "int" else (float(low), float(high))
