"""What the report's plots show, read from matplotlib's objects, not pixels (issue 25, item 7):
the learning curves draw loss ÷ chance as the median over seeds with their min-max band, every
gap in a numerically sorted legend on every panel, the task's solved threshold on the axis it
is decided on, and an accuracy row for a classification task.

No training: a fake run directory is written as the runner writes one (the run's and each
trial's ``config.yaml``, ``metrics.jsonl`` and ``summary.json``); the oracles are computed here
with numpy from the metrics lines written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _fake_runs import new_run_dir

from lstmjax._io import json_safe
from lstmjax.experiment import expand, write_report
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, write_config
from lstmjax.experiment.summary import SeedResult, TrialSummary

STEPS = [100, 200, 300, 400]
SEEDS = [0, 1, 2]
GAPS = [40, 5, 20, 10]  # swept out of order: "10" < "20" < "40" < "5" as strings
ADDING = """\
name: fake
task: {name: adding, length: 5, solved_threshold: 0.05}
model: {cell: rnn, hidden_size: 8}
train: {steps: 400, eval_every: 100, seeds: 3}
sweep: {model.cell: [rnn, lstm], task.length: [40, 5, 20, 10]}
"""
EVEN_PAIRS = """\
name: fake
task: {name: even_pairs, length: 5, solved_threshold: 0.95}
model: {cell: rnn, hidden_size: 8}
train: {steps: 400, eval_every: 100, seeds: 3}
sweep: {model.cell: [rnn, lstm], task.length: [40, 5, 20, 10]}
"""
CHANCE = {"adding": 1 / 6, "even_pairs": math.log(2)}


def _loss(k: int, gap: int, seed: int, step: int) -> float:
    """A distinct loss per (variant, gap, seed, step); seeds spread apart so the band is wide."""
    return (1.0 + 0.4 * seed) * math.exp(-step / (60.0 * gap * (k + 1)))


def _fake_run(tmp_path: Path, text: str) -> tuple[Path, dict]:
    """A finished fake run; returns its directory and {(variant, gap): metrics lines}."""
    cfg, run_dir = new_run_dir(tmp_path, text)
    task, chance = cfg.task.name, CHANCE[cfg.task.name]
    written = {}
    variants = list(dict.fromkeys(t.variant for t in expand(cfg)))
    for trial in expand(cfg):
        k, gap = variants.index(trial.variant), trial.cfg.task.length
        tdir = run_dir / trial.name
        tdir.mkdir()
        write_config(tdir / CONFIG_FILE, to_dict(trial.cfg))
        lines = [{"step": step, "seed": s, "loss": chance * _loss(k, gap, s, step),
                  "accuracy": min(1.0, 0.5 + 0.1 * s + step / (100.0 * gap)), "solved": False}
                 for step in STEPS for s in SEEDS]
        (tdir / METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in lines))
        written[(trial.variant, gap)] = lines
        per_seed = [SeedResult(seed=s, solved=False, steps_to_solve=None,
                               final_loss=lines[-1]["loss"], final_accuracy=0.5, diverged=False,
                               diverged_step=None, steps_trained=STEPS[-1]) for s in SEEDS]
        summary = TrialSummary.build(
            per_seed, trial=trial.name, index=trial.index, values=trial.values,
            variant=trial.variant, task=task, cell=trial.cfg.model.cell, length=gap,
            chance_loss=chance, loss_type="mse" if task == "adding" else "xent", steps=400,
            seeds=SEEDS)
        (tdir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary.to_json())))
    return run_dir, written


def _figures(monkeypatch, run_dir: Path) -> dict:
    """{plot file name: Figure} of the report of ``run_dir`` (saved as usual)."""
    from lstmjax.experiment import report

    figs, save = {}, report._save

    def keep(fig, path):
        figs[Path(path).name] = fig
        save(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    write_report(run_dir)
    return figs


def _panels(fig) -> dict:
    """{variant: (loss axes, accuracy axes or None)} of a learning-curves figure."""
    shown = [ax for ax in fig.axes if ax.get_visible()]
    out = {}
    for ax in shown:
        if ax.get_title():
            spec = ax.get_subplotspec()
            below = [a for a in shown if not a.get_title()
                     and a.get_subplotspec().colspan.start == spec.colspan.start
                     and a.get_subplotspec().rowspan.start == spec.rowspan.start + 1]
            out[ax.get_title()] = (ax, below[0] if below else None)
    return out


def _median_line(ax, gap: int):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == str(gap)]
    return line


def _check_band(ax, index: int, values: np.ndarray) -> None:
    """The ``index``-th band of ``ax`` spans, at each step, the min and max over seeds."""
    verts = ax.collections[index].get_paths()[0].vertices
    for step, column in zip(STEPS, values.T, strict=True):
        ys = verts[np.isclose(verts[:, 0], step), 1]
        assert ys.min() == pytest.approx(column.min(), rel=1e-9)
        assert ys.max() == pytest.approx(column.max(), rel=1e-9)


def _per_seed(lines: list[dict], key: str, scale: float = 1.0) -> np.ndarray:
    """[seeds, steps] of ``key`` / ``scale`` -- the oracle, straight from the lines written."""
    return np.array([[next(m[key] for m in lines if m["seed"] == s and m["step"] == step)
                      / scale for step in STEPS] for s in SEEDS])


def test_learning_curves_draw_loss_over_chance_with_seed_bands_sorted_gaps_and_threshold(
        tmp_path, monkeypatch):
    run_dir, written = _fake_run(tmp_path, ADDING)
    fig = _figures(monkeypatch, run_dir)["learning_curves.png"]
    panels = _panels(fig)
    assert set(panels) == {"rnn", "lstm"}
    for variant, (ax, acc) in panels.items():
        # every gap in the legend of every panel, in numeric order
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["5", "10", "20", "40"]
        assert ax.get_yscale() == "log"
        # adding is solved at MSE < solved_threshold x chance: here 0.05 (the config's, not
        # the default 0.01), a horizontal line at 0.05 on the loss ÷ chance axis
        (threshold,) = [ln for ln in ax.get_lines() if ln.get_gid() == "solved-threshold"]
        assert list(threshold.get_ydata()) == [0.05, 0.05]
        (chance,) = [ln for ln in ax.get_lines() if ln.get_gid() == "chance"]
        assert list(chance.get_ydata()) == [1.0, 1.0]
        assert acc is None  # a regression task solved on its loss: no accuracy row
        for i, gap in enumerate(sorted(GAPS)):
            ratios = _per_seed(written[(variant, gap)], "loss", CHANCE["adding"])
            line = _median_line(ax, gap)
            np.testing.assert_allclose(line.get_xdata(), STEPS)
            np.testing.assert_allclose(line.get_ydata(), np.median(ratios, axis=0), rtol=1e-9)
            _check_band(ax, i, ratios)
    # a gap has one colour in every panel, and the colours differ between gaps
    colors = {g: {tuple(_median_line(ax, g).get_color()) for ax, _ in panels.values()}
              for g in GAPS}
    assert all(len(c) == 1 for c in colors.values()) and len(set().union(*colors.values())) == 4


def test_learning_curves_of_a_classification_task_add_an_accuracy_row_with_its_threshold(
        tmp_path, monkeypatch):
    run_dir, written = _fake_run(tmp_path, EVEN_PAIRS)
    fig = _figures(monkeypatch, run_dir)["learning_curves.png"]
    panels = _panels(fig)
    assert set(panels) == {"rnn", "lstm"}
    for variant, (ax, acc) in panels.items():
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["5", "10", "20", "40"]
        # solved on accuracy >= 0.95: the line is on the accuracy axis, not the loss axis
        assert acc is not None
        assert not [ln for ln in ax.get_lines() if ln.get_gid() == "solved-threshold"]
        (threshold,) = [ln for ln in acc.get_lines() if ln.get_gid() == "solved-threshold"]
        assert list(threshold.get_ydata()) == [0.95, 0.95]
        for i, gap in enumerate(sorted(GAPS)):
            lines = written[(variant, gap)]
            ratios = _per_seed(lines, "loss", CHANCE["even_pairs"])
            np.testing.assert_allclose(_median_line(ax, gap).get_ydata(),
                                       np.median(ratios, axis=0), rtol=1e-9)
            accuracy = _per_seed(lines, "accuracy")
            (line,) = [ln for ln in acc.get_lines() if ln.get_gid() != "solved-threshold"
                       and tuple(ln.get_color()) == tuple(_median_line(ax, gap).get_color())]
            np.testing.assert_allclose(line.get_ydata(), np.median(accuracy, axis=0))
            _check_band(acc, i, accuracy)


def _summary(variant: str, gap: int, solved_steps: list, length_eval=None) -> dict:
    """A finished even_pairs trial dict (as the report collects it) without files: one seed
    per entry of ``solved_steps``, solved after that many steps, or not (None)."""
    per_seed = [SeedResult(seed=i, solved=n is not None, steps_to_solve=n, final_loss=0.1,
                           final_accuracy=0.5, diverged=False, diverged_step=None,
                           steps_trained=n or 1000) for i, n in enumerate(solved_steps)]
    summary = TrialSummary.build(
        per_seed, trial=f"{variant}-{gap}", index=0, values={}, variant=variant,
        task="even_pairs", cell=variant, length=gap, chance_loss=CHANCE["even_pairs"],
        loss_type="xent", steps=1000, seeds=list(range(len(solved_steps))),
        length_eval=length_eval)
    return {"variant": variant, "gap": gap, "summary": summary, "metrics": [], "assignment": {}}


def _cfg():
    from lstmjax.experiment import from_dict

    return from_dict({"name": "p", "task": {"name": "even_pairs", "length": 5},
                      "sweep": {"model.cell": ["lstm", "rnn"], "task.length": [5, 10, 20]}})


def test_length_plot_legend_lists_training_gaps_in_numeric_order_with_the_threshold():
    from lstmjax.experiment.report import _length_plot

    def evals(gap):
        return [{"length": n, "trained": n == gap, "accuracy": [0.4 + n / 100, 0.6, 0.9],
                 "solved": [False, False, True], "loss": [0.1] * 3,
                 "loss_vs_chance": [0.2] * 3} for n in (5, 10, 20, 40)]

    # a frontier probes out of order: 20 before 5 and 10
    trials = [_summary("lstm", g, [100, None, None], evals(g)) for g in (20, 5, 10)]
    ax = _length_plot(trials, _cfg()).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "lstm, trained at 5", "lstm, trained at 10", "lstm, trained at 20"]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "lstm, trained at 5"]
    np.testing.assert_allclose(line.get_ydata(), [np.median([0.4 + n / 100, 0.6, 0.9])
                                                  for n in (5, 10, 20, 40)])
    # even_pairs is solved at accuracy >= 0.9 (its default)
    (threshold,) = [ln for ln in ax.get_lines() if ln.get_gid() == "solved-threshold"]
    assert list(threshold.get_ydata()) == [0.9, 0.9]


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_solved_vs_gap_bars_are_wilson_intervals_and_steps_bars_are_quartiles():
    from lstmjax.experiment.report import _solved_vs_gap, _steps_plot

    steps = {5: [100, 140, 300, None], 10: [400, 500, None, None], 20: [900, None, None, None]}
    trials = [_summary("lstm", g, steps[g]) for g in (5, 10, 20)]
    ax = _solved_vs_gap(trials, _cfg()).axes[0]
    (bars,) = ax.containers[0].lines[2]
    for seg, g in zip(bars.get_segments(), (5, 10, 20), strict=True):
        k = sum(n is not None for n in steps[g])
        assert seg[0][0] == g
        np.testing.assert_allclose([seg[0][1], seg[1][1]], _wilson(k, 4), atol=1e-12)
    ax = _steps_plot(trials, _cfg()).axes[0]
    (bars,) = ax.containers[0].lines[2]
    for seg, g in zip(bars.get_segments(), (5, 10, 20), strict=True):
        solved = [n for n in steps[g] if n is not None]
        np.testing.assert_allclose([seg[0][1], seg[1][1]], np.percentile(solved, [25, 75]))
    np.testing.assert_allclose(np.asarray(ax.containers[0].lines[0].get_ydata(), float),
                               [np.median([n for n in steps[g] if n is not None])
                                for g in (5, 10, 20)])


def test_plots_note_names_the_gap_cap_only_when_a_panel_leaves_gaps_out():
    from lstmjax.experiment.report import MAX_CURVES, _curves, _plots_note

    # 10 gaps x 3 seeds: every gap is drawn (a median with its band): nothing is left out
    ten = [_summary("lstm", g, [100, None, None]) for g in range(5, 15)]
    assert _plots_note(ten, []) == ""
    # 20 gaps: 16 of them, evenly spread, the first and last included
    twenty = [_summary("lstm", g, [100, None, None]) for g in range(20, 0, -1)]
    gaps = [t["gap"] for t in _curves(twenty)]
    assert len(gaps) == MAX_CURVES and gaps == sorted(gaps) and gaps[0] == 1 and gaps[-1] == 20
    assert f"at most {MAX_CURVES} gaps (evenly spread)" in _plots_note(twenty, [])


def test_solved_threshold_is_read_on_the_axis_each_task_decides_it():
    """adding is solved at MSE < 1% of chance (its docstring); every other built-in task on
    its accuracy >= its default solved_threshold."""
    from types import SimpleNamespace

    import lstmjax.tasks as tasks
    from lstmjax.experiment import from_dict
    from lstmjax.experiment.report import _solved_criterion

    for name in tasks.names():
        defaults = tasks.parameters(name)
        cfg = from_dict({"name": "x", "task": {"name": name, "length": defaults["length"]}})
        trial = {"summary": SimpleNamespace(task=name, length=defaults["length"])}
        want = (("loss", 0.01) if name == "adding" else
                ("accuracy", defaults["solved_threshold"]))
        assert _solved_criterion(cfg, trial) == want, name
