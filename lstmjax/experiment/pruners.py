"""``sweep.pruner`` (optuna): the pruners a search may use, their settings, and the parsing
of the setting (a leaf, like :mod:`lstmjax.experiment.space`; the pruner itself is built by
:mod:`lstmjax.experiment.search.pruning`)."""

from __future__ import annotations

from typing import Any

from lstmjax.experiment.errors import did_you_mean

__all__ = ["PRUNERS", "parse_pruner"]

# sweep.pruner (optuna): name -> its settings (optuna's argument names) and their defaults; a
# setting is an integer >= its minimum, or "auto" where the default is
PRUNERS: dict[str, dict[str, tuple[Any, int]]] = {
    "none": {},
    "median": {"n_startup_trials": (5, 0), "n_warmup_steps": (0, 0), "interval_steps": (1, 1),
               "n_min_trials": (1, 1)},
    "successive_halving": {"min_resource": ("auto", 1), "reduction_factor": (4, 2),
                           "min_early_stopping_rate": (0, 0)},
    "hyperband": {"min_resource": (1, 1), "max_resource": ("auto", 1),
                  "reduction_factor": (3, 2)},
}


def parse_pruner(value: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``pruner: median`` or ``{name: median, <optuna's settings>}`` as (name, settings)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ValueError(f"pruner: expected one of {', '.join(PRUNERS)} or a mapping "
                         f"{{name: median, n_startup_trials: 5, ...}}, got {value!r}")
    name = value["name"]
    if not isinstance(name, str) or name not in PRUNERS:
        raise ValueError(f"pruner.name: {name!r} is not one of {', '.join(PRUNERS)}"
                         f"{did_you_mean(name, PRUNERS)}")
    allowed = PRUNERS[name]
    out = []
    for key, v in value.items():
        if key == "name":
            continue
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ValueError(f"pruner.{key}: not a setting of the {name} pruner"
                             f"{did_you_mean(key, list(allowed))} (its settings: {known})")
        default, least = allowed[key]
        if v == "auto" and default == "auto":
            out.append((key, v))
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not least <= v < 2**63:
            auto = " or auto" if default == "auto" else ""
            raise ValueError(f"pruner.{key}: expected an integer >= {least}{auto}, got {v!r}")
        out.append((key, v))
    return name, tuple(out)
