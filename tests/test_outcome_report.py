"""The per-seed outcome reaches results.csv and the report, and the Finding never calls a
budget effect a failure: a fake run (files written as the runner writes them, no training) whose
unsolved gap is still falling at the budget, against one that is flat at chance."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from _fake_runs import new_run_dir

from lstmjax._io import json_safe
from lstmjax.experiment import expand, write_report
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, write_config
from lstmjax.experiment.summary import SeedResult, TrialSummary

CHANCE = 1 / 6
STEPS = list(range(100, 2600, 100))
CONFIG = """\
name: fake
task: {name: adding, length: 5}
model: {cell: rnn, hidden_size: 8}
train: {steps: 2500, eval_every: 100, seeds: 3}
sweep: {task.length: [5, 10]}
output: {progress: none, plots: false}
"""


def _write_trial(run_dir: Path, trial, curve, solved: bool) -> None:
    tdir = run_dir / trial.name
    tdir.mkdir()
    write_config(tdir / CONFIG_FILE, to_dict(trial.cfg))
    lines = [{"step": step, "seed": s, "loss": loss, "solved": solved and step == STEPS[-1]}
             for step, loss in zip(STEPS, curve, strict=True) for s in range(3)]
    (tdir / METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in lines))
    per_seed = [SeedResult(seed=s, solved=solved, steps_to_solve=STEPS[-1] if solved else None,
                           final_loss=curve[-1], final_accuracy=None, diverged=False,
                           diverged_step=None, steps_trained=STEPS[-1]) for s in range(3)]
    summary = TrialSummary.build(
        per_seed, trial=trial.name, index=trial.index, values=trial.values,
        variant=trial.variant, task="adding", cell="rnn", length=trial.cfg.task.length,
        chance_loss=CHANCE, loss_type="mse", steps=2500, seeds=[0, 1, 2])
    (tdir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary.to_json())))


def _run(tmp_path: Path, unsolved_curve, plots: bool = False) -> tuple[str, list[dict]]:
    cfg, run_dir = new_run_dir(tmp_path, CONFIG)
    short, long = expand(cfg)
    _write_trial(run_dir, short, [CHANCE * math.exp(-s / 300) for s in STEPS], solved=True)
    _write_trial(run_dir, long, unsolved_curve, solved=False)
    rep = write_report(run_dir, plots=plots)
    with (run_dir / "results.csv").open() as f:
        return rep["finding"], list(csv.DictReader(f))


def test_still_falling_at_the_budget_is_budget_limited_not_a_failure(tmp_path):
    finding, rows = _run(tmp_path, [CHANCE * math.exp(-s / 800) for s in STEPS])
    assert [r["outcome"] for r in rows] == ["solved"] * 3 + ["learning"] * 3
    assert "fails" not in finding
    assert ("solves gaps up to 5 and had not solved 10 when its 2500-step budget ran out "
            "(3 learning: a budget limit, not yet a failure)") in finding


def test_flat_at_chance_is_a_failure_and_says_stuck(tmp_path):
    finding, rows = _run(tmp_path, [CHANCE * (1 + 0.01 * (-1) ** i) for i in range(len(STEPS))])
    assert [r["outcome"] for r in rows] == ["solved"] * 3 + ["stuck"] * 3
    assert "solves gaps up to 5 and fails at 10 (3 stuck)" in finding


def test_intervals_of_none_and_all_solved_draw(tmp_path):
    # 0/3 and 3/3: Wilson bounds that round a hair past the fraction (0/3's lower bound is
    # 5.6e-17 above 0) must still draw as error bars
    _run(tmp_path, [CHANCE] * len(STEPS), plots=True)
    assert (tmp_path / "run" / "plots" / "solved_vs_gap.png").stat().st_size > 0


def _solved_trial(variant: str, gap: int, steps: list[int]) -> dict:
    per_seed = [SeedResult(seed=i, solved=True, steps_to_solve=n, final_loss=0.001,
                           final_accuracy=None, diverged=False, diverged_step=None,
                           steps_trained=n) for i, n in enumerate(steps)]
    summary = TrialSummary.build(
        per_seed, trial=f"{variant}-{gap}", index=0, values={}, variant=variant, task="adding",
        cell="lstm", length=gap, chance_loss=CHANCE, loss_type="mse", steps=5000,
        seeds=list(range(len(steps))))
    return {"variant": variant, "gap": gap, "summary": summary, "metrics": []}


def test_the_cost_sentence_names_the_growth_law_the_seeds_follow():
    from lstmjax.experiment.report import cost_sentence

    gaps = [10, 20, 40, 80, 160, 320]
    power = [_solved_trial("p", g, [round(20 * g ** 0.9 * f) for f in (0.9, 1.0, 1.1)])
             for g in gaps]
    expo = [_solved_trial("e", g, [round(100 * math.exp(g / 100) * f) for f in (0.95, 1.05)])
            for g in gaps]
    text = cost_sentence(power + expo)
    assert "p's steps to solve grow as gap^0.90, a power law rather than an exponential" in text
    assert ("e's steps to solve grow as an exponential doubling every 69 steps of gap, rather "
            "than a power law") in text
    assert cost_sentence(power[:2]) == ""  # two gaps: no law claimed


def _grid_trial(variant: str, gap: int, solved: int, seeds: int) -> dict:
    per_seed = [SeedResult(seed=i, solved=i < solved, steps_to_solve=500 if i < solved else None,
                           final_loss=0.001 if i < solved else CHANCE, final_accuracy=None,
                           diverged=False, diverged_step=None, steps_trained=500)
                for i in range(seeds)]
    summary = TrialSummary.build(
        per_seed, trial=f"{variant}-{gap}", index=0, values={}, variant=variant, task="adding",
        cell=variant, length=gap, chance_loss=CHANCE, loss_type="mse", steps=2500,
        seeds=list(range(seeds)))
    return {"variant": variant, "gap": gap, "summary": summary, "metrics": [],
            "damaged": None, "name": f"{variant}-{gap}"}


def test_the_finding_hedges_when_the_intervals_overlap(tmp_path):
    from lstmjax.experiment import from_dict
    from lstmjax.experiment.report import finding

    cfg = from_dict({"name": "h", "task": {"name": "adding", "length": 5},
                     "sweep": {"model.cell": ["lstm", "rnn"], "task.length": [5, 10]}})

    def run(seeds):
        trials = [_grid_trial("lstm", 5, seeds, seeds), _grid_trial("lstm", 10, seeds, seeds),
                  _grid_trial("rnn", 5, seeds, seeds), _grid_trial("rnn", 10, 0, seeds)]
        return finding(cfg, trials, None)

    # 3/3 against 0/3: Wilson [0.44, 1] and [0, 0.56] overlap -- the seeds cannot tell
    assert ("With 3 seeds per probe the 95% intervals still overlap at gap 10 (lstm 3/3, rnn "
            "0/3 seeds solved): not distinguishable yet; more seeds would settle it.") in run(3)
    # 8/8 against 0/8: [0.68, 1] and [0, 0.32] -- distinguishable, no hedge
    assert "overlap" not in run(8) and "lstm bridges the longest gap (10)" in run(8)
