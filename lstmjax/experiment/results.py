"""A run directory as pandas DataFrames, for notebooks (``pip install 'lstmjax[results]'``).

    df = lj.experiment.load_results("runs/quickstart")    # one row per finished trial and seed
    curves = lj.experiment.load_metrics("runs/quickstart")   # one row per metrics.jsonl line
    diag = lj.experiment.load_diagnostics("runs/quickstart") # .gradient_flow, .gates, .timescales

Both read the directory the way the report does (:func:`~lstmjax.experiment.report.collect`):
a trial whose files are damaged is left out with a warning. ``load_results`` has results.csv's
columns (:func:`~lstmjax.experiment.report.result_columns`: trial, variant, task, cell, length,
seed, solved, steps_to_solve, final_loss, ..., then the swept keys by their dotted names),
missing values as NA (integer columns are pandas' nullable ``Int64``); it is computed from the
trials' ``summary.json`` files, so it needs no report to have been written. ``load_metrics``
and ``load_diagnostics`` include unfinished trials (their records so far).

The three share their leading columns: ``trial, variant, cell, length``, then the swept keys by
their dotted names (``load_metrics`` also keeps ``gap``, the old name of ``length``). With
``config=True`` every key of each trial's stored ``config.yaml`` is a column too, flattened to
its dotted name (``train.learning_rate``, ``model.hidden_size``, ...), swept or not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from lstmjax.experiment.report import RESULT_COLUMNS, collect_with_columns, results_rows
from lstmjax.experiment.rundir import (
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    DamagedFile,
    read_diagnostics,
    read_yaml,
)
from lstmjax.experiment.sweep import format_value

__all__ = ["load_results", "load_metrics", "load_diagnostics", "Diagnostics"]

# integer columns that may be missing (a seed that never solved has no steps_to_solve)
_INTEGER = ("length", "seed", "steps_to_solve", "diverged_step", "steps_trained")
_BOOLEAN = ("solved", "diverged", "blew_up")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ModuleNotFoundError(
            "lstmjax.experiment.load_results/load_metrics/load_diagnostics need the optional "
            "package pandas: "
            "pip install 'lstmjax[results]'", name="pandas",
        ) from None
    return pandas


def load_results(run_dir: str | os.PathLike, *, config: bool = False):
    """One row per (finished trial, seed): the columns of ``results.csv`` (with ``config``,
    then the trial's flattened config)."""
    pd = _pandas()
    run_dir = Path(run_dir)
    _, trials, columns = collect_with_columns(run_dir)
    rows = [{k: _cell(row.get(k)) for k in columns} for row in results_rows(trials)]
    if config:
        flat = {t["name"]: _flat_config(run_dir / t["name"]) for t in trials}
        extra = _config_columns(flat.values(), columns)
        rows = [{**row, **{k: flat[row["trial"]].get(k) for k in extra}} for row in rows]
        columns = [*columns, *extra]
    df = pd.DataFrame.from_records(rows, columns=columns)
    return df.astype({**dict.fromkeys(_INTEGER, "Int64"), **dict.fromkeys(_BOOLEAN, "boolean")})


def load_metrics(run_dir: str | os.PathLike, *, config: bool = False):
    """One row per metrics.jsonl line of every trial: ``trial, variant, cell, length`` (and
    ``gap``, its old name), the swept keys other than ``model.cell`` and ``task.length``, then
    the line (``step, seed, train_loss, grad_norm, lr, loss, loss_vs_chance, accuracy, solved,
    ...``); with ``config``, the trial's flattened config last."""
    pd = _pandas()
    run_dir = Path(run_dir)
    _, trials, columns = collect_with_columns(run_dir)
    heads, lead, extra = _heads(run_dir, columns, trials, config)
    rows, keys = [], {}
    for t in trials:
        head = {**heads[t["name"]], "gap": t["gap"]}
        for line in t["metrics"]:
            keys.update(dict.fromkeys(line))
            rows.append({**head, **line})
    columns = [*lead[:4], "gap", *lead[4:], *keys, *extra]
    df = pd.DataFrame.from_records(rows, columns=columns)
    return df.astype({"step": "int64", "seed": "int64"}) if rows else df


class Diagnostics(NamedTuple):
    """:func:`load_diagnostics`' three tidy frames."""

    gradient_flow: Any  # one row per (trial, seed, step, lag): log10_gain
    gates: Any  # one row per (trial, seed, step, gate): mean, frac_low, frac_high, saturation
    timescales: Any  # one row per (trial, seed, step): keep_gate, tau_q10, ..., tau_q90


def load_diagnostics(run_dir: str | os.PathLike, *, config: bool = False) -> Diagnostics:
    """Every trial's ``diagnostics.jsonl`` as three tidy DataFrames, each led by ``trial,
    variant, cell, length``, the swept keys, ``seed, step``:

    * ``gradient_flow``: ``lag, log10_gain`` -- log10 of the gain of ds_T/ds_{T-lag}
      (:func:`lstmjax.diagnostics.gradient_flow`), one row per lag -- and
      ``dependency_lag``, the median of ``task.dependency_lags`` over the line's batch (how
      far back the information the output needs lies; NA in lines that did not record it);
    * ``gates``: ``gate, mean, frac_low, frac_high, saturation`` (= frac_low + frac_high, the
      fraction of gate values below ``low`` or above ``high``), one row per gate;
    * ``timescales``: ``keep_gate`` (the gate that keeps memory, e.g. ``f`` or ``1-z``) and the
      10/25/50/75/90 % quantiles of its memory time-scale tau = -1/ln(keep), in steps
      (``tau_q10``, ``tau_q25``, ``tau_median``, ``tau_q75``, ``tau_q90``; the deciles are NA
      in lines written before they were recorded).

    ``config``: the trial's flattened config as further columns. A damaged line ends that
    trial's records with a warning (what came before it is kept)."""
    pd = _pandas()
    run_dir = Path(run_dir)
    _, trials, columns = collect_with_columns(run_dir)
    heads, lead, extra = _heads(run_dir, columns, trials, config)
    flow, gates, taus = [], [], []
    for t in trials:
        for line in read_diagnostics(run_dir / t["name"] / DIAGNOSTICS_FILE):
            at = {**heads[t["name"]], "seed": line["seed"], "step": line["step"]}
            gf = line.get("gradient_flow") or {}
            needed = _median_lag(line.get("dependency_lags"))
            for lag, gain in zip(gf.get("lag") or [], gf.get("log10_gain") or [], strict=False):
                flow.append({**at, "lag": lag, "log10_gain": _number(gain),
                             "dependency_lag": needed})
            stats = line.get("gates") or {}
            for gate, g in (stats.get("gates") or {}).items():
                low, high = _number(g.get("frac_low")), _number(g.get("frac_high"))
                gates.append({**at, "gate": gate, "mean": _number(g.get("mean")),
                              "frac_low": low, "frac_high": high, "saturation": low + high})
            if stats.get("keep_gate") is not None:
                tau = stats.get("timescale") or {}
                taus.append({**at, "keep_gate": stats["keep_gate"],
                             **{f"tau_{q}": _number(tau.get(q)) for q in _TAU}})

    def frame(rows: list[dict], own: list[str]):
        df = pd.DataFrame.from_records(rows, columns=[*lead, "seed", "step", *own, *extra])
        return df.astype({"seed": "int64", "step": "int64"}) if rows else df

    return Diagnostics(
        frame(flow, ["lag", "log10_gain", "dependency_lag"]),
        frame(gates, ["gate", "mean", "frac_low", "frac_high", "saturation"]),
        frame(taus, ["keep_gate", *(f"tau_{q}" for q in _TAU)]),
    )


_TAU = ("q10", "q25", "median", "q75", "q90")


def _median_lag(lags) -> Any:
    """The median (nearest rank, as :mod:`lstmjax.experiment.why`) of a line's dependency lags;
    None when the line has none."""
    if not lags:
        return None
    ranked = sorted(lags)
    return ranked[round(0.5 * (len(ranked) - 1))]


def _heads(run_dir: Path, columns: list[str], trials: list[dict], config: bool):
    """(per trial its leading values, the leading columns ``trial, variant, cell, length`` and
    the swept keys, the flattened-config columns -- none without ``config``); ``columns``:
    the run's results columns."""
    swept = columns[len(RESULT_COLUMNS):]
    lead = ["trial", "variant", "cell", "length", *swept]
    heads = {t["name"]: {"trial": t["name"], "variant": t["variant"], "cell": t["cell"],
                         "length": t["gap"], **{k: _cell(t["assignment"].get(k)) for k in swept}}
             for t in trials}
    extra: list[str] = []
    if config:
        flat = {t["name"]: _flat_config(run_dir / t["name"]) for t in trials}
        extra = _config_columns(flat.values(), lead)
        for name, head in heads.items():
            head.update({k: flat[name].get(k) for k in extra})
    return heads, lead, extra


def _flat_config(trial_dir: Path) -> dict[str, Any]:
    """A trial's stored ``config.yaml`` flattened to dotted keys (lists as their label); {} when
    it is missing or damaged."""
    try:
        raw = read_yaml(trial_dir / CONFIG_FILE)
    except (DamagedFile, OSError):
        return {}
    out: dict[str, Any] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = None if isinstance(value, dict) else _cell(value)

    walk("", raw if isinstance(raw, dict) else {})
    return out


def _config_columns(flats, taken: list[str]) -> list[str]:
    """The dotted config keys of any trial, in first-seen order, that are not already columns."""
    extra: dict[str, None] = {}
    for flat in flats:
        extra.update(dict.fromkeys(k for k in flat if k not in taken))
    return list(extra)


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _cell(value):
    """A value as one DataFrame cell: lists and tuples (zoneout pairs, ...) as their label."""
    return format_value(value) if isinstance(value, (list, tuple)) else value
