"""lj.experiment.load_results / load_metrics: the run directory as DataFrames that agree with
results.csv and metrics.jsonl. Tiny: rnn, hidden 8, gap 4, 20 steps, a 2-trial sweep."""

from __future__ import annotations

import csv
import shutil
import sys

import pytest
import yaml

import lstmjax as lj
from lstmjax.experiment import load_config, read_metrics, run

pd = pytest.importorskip("pandas")

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 2}
sweep: {train.learning_rate: [0.01, 0.02]}
output: {checkpoint_every: 20, progress: none, plots: false}
"""
TRIALS = ["learning_rate-0.01", "learning_rate-0.02"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    path = tmp / "tiny.yaml"
    path.write_text(TINY)
    run(load_config(path), out_dir=tmp / "run")
    return tmp / "run"


def _text(v) -> str:
    """A DataFrame cell as results.csv writes it."""
    return "" if pd.isna(v) else str(v)


def test_load_results_agrees_with_results_csv(finished):
    df = lj.experiment.load_results(finished)
    with (finished / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(df.columns) == list(rows[0])
    assert "train.learning_rate" in df.columns  # the sweep key, by its dotted name
    assert len(df) == len(rows) == 4  # one row per trial and seed
    for (_, got), want in zip(df.iterrows(), rows, strict=True):
        assert {k: _text(v) for k, v in got.items()} == want
    assert sorted(df["trial"].unique()) == TRIALS
    assert df["seed"].dtype == "Int64" and df["solved"].dtype == "boolean"
    assert sorted(df["train.learning_rate"].unique()) == [0.01, 0.02]


def test_load_metrics_agrees_with_metrics_jsonl(finished):
    df = lj.experiment.load_metrics(finished)
    assert list(df.columns[:7]) == ["trial", "variant", "cell", "length", "gap",
                                    "train.learning_rate", "step"]
    assert (df["gap"] == df["length"]).all()  # gap: the old name, kept
    for name, lr in zip(TRIALS, (0.01, 0.02), strict=True):
        lines = read_metrics(finished / name / "metrics.jsonl")
        mine = df[df["trial"] == name]
        assert len(mine) == len(lines) == 4  # 2 evaluations x 2 seeds
        assert set(mine["gap"]) == {4} and set(mine["cell"]) == {"rnn"}
        assert set(mine["train.learning_rate"]) == {lr}
        for (_, got), want in zip(mine.iterrows(), lines, strict=True):
            assert {k: got[k] for k in want} == pytest.approx(want)
    curve = df.groupby(["trial", "step"])["loss"].median()  # what a notebook does with it
    assert len(curve) == 4


def test_unfinished_trials_have_curves_but_no_results(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    (copy / TRIALS[1] / "summary.json").unlink()  # as if still running
    assert set(lj.experiment.load_results(copy)["trial"]) == {TRIALS[0]}
    assert set(lj.experiment.load_metrics(copy)["trial"]) == set(TRIALS)


def test_without_pandas_a_one_line_error(finished, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModuleNotFoundError) as e:
        lj.experiment.load_results(finished)
    assert str(e.value) == (
        "lstmjax.experiment.load_results/load_metrics/load_diagnostics need the optional "
        "package pandas: pip install 'lstmjax[results]'"
    )


def test_config_columns_hold_each_trials_stored_config(finished):
    df = lj.experiment.load_results(finished, config=True)
    for name in TRIALS:
        stored = yaml.safe_load((finished / name / "config.yaml").read_text())
        row = df[df["trial"] == name].iloc[0]
        assert row["model.hidden_size"] == stored["model"]["hidden_size"]
        assert row["train.batch_size"] == stored["train"]["batch_size"]
        assert row["task.name"] == stored["task"]["name"]
    metrics = lj.experiment.load_metrics(finished, config=True)
    assert "train.optimizer" in metrics.columns and "train.optimizer" not in \
        lj.experiment.load_metrics(finished).columns
