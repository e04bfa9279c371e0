"""A run directory as pandas DataFrames, for notebooks (``pip install 'lstmjax[results]'``).

    df = lj.experiment.load_results("runs/quickstart")    # one row per finished trial and seed
    curves = lj.experiment.load_metrics("runs/quickstart")   # one row per metrics.jsonl line

Both read the directory the way the report does (:func:`lstmjax.experiment.report.collect`):
a trial whose files are damaged is left out with a warning. ``load_results`` has results.csv's
columns (:func:`~lstmjax.experiment.report.result_columns`: trial, variant, task, cell, length,
seed, solved, steps_to_solve, final_loss, ..., then the swept keys by their dotted names),
missing values as NA (integer columns are pandas' nullable ``Int64``); it is computed from the
trials' ``summary.json`` files, so it needs no report to have been written. ``load_metrics``
includes unfinished trials (their curves so far).
"""

from __future__ import annotations

import os
from pathlib import Path

from lstmjax.experiment.report import RESULT_COLUMNS, collect_with_columns, results_rows
from lstmjax.experiment.sweep import format_value

__all__ = ["load_results", "load_metrics"]

# integer columns that may be missing (a seed that never solved has no steps_to_solve)
_INTEGER = ("length", "seed", "steps_to_solve", "diverged_step", "steps_trained")
_BOOLEAN = ("solved", "diverged", "blew_up")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ModuleNotFoundError(
            "lstmjax.experiment.load_results/load_metrics need the optional package pandas: "
            "pip install 'lstmjax[results]'", name="pandas",
        ) from None
    return pandas


def load_results(run_dir: str | os.PathLike):
    """One row per (finished trial, seed): the columns of ``results.csv``."""
    pd = _pandas()
    _, trials, columns = collect_with_columns(Path(run_dir))
    rows = [{k: _cell(row.get(k)) for k in columns} for row in results_rows(trials)]
    df = pd.DataFrame.from_records(rows, columns=columns)
    return df.astype({**dict.fromkeys(_INTEGER, "Int64"), **dict.fromkeys(_BOOLEAN, "boolean")})


def load_metrics(run_dir: str | os.PathLike):
    """One row per metrics.jsonl line of every trial: ``trial, variant, cell, gap``, the swept
    keys other than ``model.cell`` and ``task.length``, then the line (``step, seed,
    train_loss, grad_norm, lr, loss, loss_vs_chance, accuracy, solved, ...``)."""
    pd = _pandas()
    _, trials, columns = collect_with_columns(Path(run_dir))
    swept = columns[len(RESULT_COLUMNS):]
    rows, keys = [], {}
    for t in trials:
        head = {"trial": t["name"], "variant": t["variant"], "cell": t["cell"], "gap": t["gap"]}
        head.update({k: _cell(t["assignment"].get(k)) for k in swept})
        for line in t["metrics"]:
            keys.update(dict.fromkeys(line))
            rows.append({**head, **line})
    columns = ["trial", "variant", "cell", "gap", *swept, *keys]
    df = pd.DataFrame.from_records(rows, columns=columns)
    return df.astype({"step": "int64", "seed": "int64"}) if rows else df


def _cell(value):
    """A value as one DataFrame cell: lists and tuples (zoneout pairs, ...) as their label."""
    return format_value(value) if isinstance(value, (list, tuple)) else value
