"""What each trial of a sweep really trains: the options its cell took, the ones it did not,
presets an option changed, and trials whose models coincide.

One ``model.options`` block serves a sweep over cells, and each cell takes only the options it
has (``forget_bias`` reaches ``lstm``, not ``gru`` nor ``cifg``, whose coupled forget gate takes
no bias). That is convenient, and it must never be silent: :func:`option_notes` says, per
variant, what was not applied and which named cell's preset an option changed (``lstmjax run``
prints them, the report lists them); :func:`check_distinct_models` refuses a sweep in which two
differently labelled trials build the same model (``--set model.options.peepholes=[f]`` turns
``lstm`` and ``peephole`` into one model: their comparison would be meaningless).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.sweep import Trial, format_value

__all__ = ["requested_options", "option_notes", "check_distinct_models", "settings_rows"]


def requested_options(base_options: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """The ``model.options`` a trial asked for before its cell filtered them: the base block,
    replaced by a swept ``model.options`` mapping, then the swept ``model.options.<key>``."""
    options = dict(base_options)
    if isinstance(trial.assignment.get("model.options"), dict):
        options = dict(trial.assignment["model.options"])
    for key, value in trial.assignment.items():
        if key.startswith("model.options."):
            options[key.removeprefix("model.options.")] = value
    return options


def _preset(cell: str) -> dict[str, Any]:
    from lstmjax import cells

    return next((row["preset"] for row in cells.describe() if row["name"] == cell), {})


def option_notes(base_options: dict[str, Any], trials: list[Trial]) -> list[str]:
    """One line per option that a variant's cell does not take, and per option that changes a
    named cell's preset (once per variant and option), in trial order."""
    notes: dict[str, None] = {}
    for t in trials:
        cell = t.cfg.model.cell
        applied = t.cfg.model.options
        for key, value in requested_options(base_options, t).items():
            if key not in applied:
                notes[f"model.options.{key} not applied to {t.variant or cell} (cell {cell} "
                      f"does not take {key}={format_value(value)})"] = None
        preset = _preset(cell)
        for key, value in applied.items():
            if key in preset and _plain(preset[key]) != _plain(value):
                notes[f"model.options.{key}={format_value(value)} changes the preset of cell "
                      f"{cell} ({key}={format_value(preset[key])}) in {t.variant or cell}"] = None
    return list(notes)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _model_key(t: Trial) -> str:
    """What the trial trains, names aside: the cell's class and every field that differs from
    the class's default (preset and options merged; nothing is built), and the rest of its
    config."""
    from lstmjax import cells

    cfg = t.cfg
    cls = cells.cell_class(cfg.model.cell)
    fields = {**_preset(cfg.model.cell), **cfg.model.options}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    fields = {k: repr(_plain(v)) for k, v in fields.items()
              if not (k in defaults and _plain(defaults[k]) == _plain(v))}
    rest = cfg.model_dump(mode="json")
    rest.pop("name", None)
    rest.pop("description", None)
    rest["model"] = {k: v for k, v in rest["model"].items() if k not in ("cell", "options")}
    return json.dumps([cls.__qualname__, fields, rest], sort_keys=True, default=str)


def check_distinct_models(trials: list[Trial]) -> None:
    """Refuse two trials that build the same model under different labels."""
    from lstmjax import cells

    seen: dict[str, Trial] = {}
    for t in trials:
        if t.cfg.model.cell not in cells.names():
            return  # a plugin not registered here: nothing to compare
        key = _model_key(t)
        if key in seen:
            a = seen[key]
            raise ConfigError(
                f"sweep: {a.variant or a.name!r} and {t.variant or t.name!r} build the same model "
                f"(cells {a.cfg.model.cell} and {t.cfg.model.cell} with options "
                f"{format_value(dict(t.cfg.model.options))}), so comparing them says nothing; "
                "drop one, or change an option so that they differ")
        seen[key] = t


def settings_rows(base_options: dict[str, Any], trials: list[Trial]) -> list[dict[str, Any]]:
    """Per variant (first trial of each): cell, effective learning rate, options applied (the
    cell's preset included), options not applied."""
    out, done = [], set()
    for t in trials:
        if t.variant in done:
            continue
        done.add(t.variant)
        applied = {**_preset(t.cfg.model.cell), **t.cfg.model.options}
        dropped = sorted(set(requested_options(base_options, t)) - set(t.cfg.model.options))
        out.append({"variant": t.variant, "cell": t.cfg.model.cell,
                    "learning_rate": t.cfg.train.learning_rate, "options": applied,
                    "not_applied": dropped})
    return out
