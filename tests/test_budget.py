"""A budget that grows: a frontier probe still learning is trained on before it counts as
unsolved (``frontier.max_budget``), and ``--resume --set train.steps=N`` continues the unsolved
seeds of a finished run. Oracles: a fake trainer whose seeds solve after a known number of steps
(the budgets the search must ask are computed here by hand), the pure frontier search, and a run
made with the larger budget from the start (the same compiled program: equal bit for bit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lstmjax import cli
from lstmjax.experiment import ConfigError, from_dict, frontier, search
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import (
    SUMMARY_FILE,
    RunError,
    raised_budget,
    write_config,
    write_summary,
)
from lstmjax.experiment.search.frontier import FrontierSearch
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import expand

BASE, MAX_BUDGET = 200, 1600
FRONTIER = {
    "name": "budget",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "rnn", "hidden_size": 4},
    "train": {"steps": BASE, "eval_every": 100, "batch_size": 4, "eval_batch_size": 4,
              "seeds": 2},
    "sweep": {"model.cell": ["rnn", "gru"]},
    "frontier": {"start": 2, "max": 40, "factor": 2, "resolution": 0.1, "min_solved": 0.5,
                 "max_budget": MAX_BUDGET, "budget_factor": 2},
    "output": {"progress": "none", "plots": False},
}
# The fake cells: a seed solves gap g after 100 g steps; the rnn cannot bridge gaps above 6
# (its seeds are stuck there, whatever the budget), the gru can bridge any gap.
LIMIT = {"rnn": 6, "gru": 10**9}


def _outcome(cell: str, gap: int, steps: int) -> str:
    if gap > LIMIT[cell]:
        return "stuck"
    return "solved" if steps >= 100 * gap else "learning"


def _fake_summary(trial) -> TrialSummary:
    cell, gap, steps = trial.cfg.model.cell, trial.cfg.task.length, trial.cfg.train.steps
    outcome = _outcome(cell, gap, steps)
    seeds = list(trial.cfg.train.seeds)
    per_seed = [SeedResult(seed=s, solved=outcome == "solved",
                           steps_to_solve=100 * gap if outcome == "solved" else None,
                           final_loss=0.001 if outcome == "solved" else 0.1,
                           final_accuracy=None, diverged=False, diverged_step=None,
                           steps_trained=steps, outcome=outcome) for s in seeds]
    return TrialSummary.build(per_seed, trial=trial.name, index=trial.index,
                              values=trial.values, variant=trial.variant, task="adding",
                              cell=cell, length=gap, chance_loss=1 / 6, loss_type="mse",
                              steps=steps, seeds=seeds)


def _expected(fc, cell: str) -> dict[int, list[int]]:
    """By hand, per probe of ``cell``'s search: the budgets it is trained with -- doubled from
    BASE, never past MAX_BUDGET, while its seeds are learning or while its budget is below twice
    the most steps a solved probe needed so far (a fair budget)."""
    needed, known, budgets = 0, {}, {}
    while True:
        gap, _ = frontier.plan(fc, known)
        if gap is None:
            return budgets
        steps = [BASE]
        fair = min(MAX_BUDGET, 2 * needed) if needed else 0
        while (_outcome(cell, gap, steps[-1]) != "solved" and steps[-1] < MAX_BUDGET
               and (_outcome(cell, gap, steps[-1]) == "learning" or steps[-1] < fair)):
            steps.append(min(2 * steps[-1], MAX_BUDGET))
        budgets[gap] = steps
        solved = _outcome(cell, gap, steps[-1]) == "solved"
        if solved:
            needed = max(needed, 100 * gap)
        known[gap] = float(solved)


def _drive(found, record=None):
    asked: dict[tuple[str, int], list[int]] = {}
    while batch := found.ask():
        for t in batch:
            key = (t.cfg.model.cell, t.cfg.task.length)
            asked.setdefault(key, []).append(t.cfg.train.steps)
            summary = _fake_summary(t)
            if record is not None:
                record(t, summary)
            found.tell(t, summary)
    return asked


def test_frontier_extends_a_learning_probe_exactly_as_far_as_needed_and_never_past_the_max():
    cfg = from_dict(FRONTIER)
    found = search.for_config(cfg, None, trials=expand(cfg))
    asked = _drive(found)
    for cell in LIMIT:
        expected = _expected(cfg.frontier, cell)
        assert {g: b for (c, g), b in asked.items() if c == cell} == expected, cell
    assert max(max(b) for b in asked.values()) == MAX_BUDGET
    # a stuck probe is trained on to a fair budget (twice what the largest solved gap so far
    # needed: 400 steps at 4 when 8 was probed, 600 at 6 when 7 was), a solved one only as far
    # as needed
    assert asked[("rnn", 8)] == [200, 400, 800] and asked[("rnn", 7)] == [200, 400, 800, 1600]
    assert asked[("rnn", 6)] == [200, 400, 800] and asked[("gru", 16)] == [200, 400, 800, 1600]
    # the decisions are the pure search's on the outcomes at each probe's final budget
    solvable = {cell: (lambda g, c=cell: float(g <= LIMIT[c] and 100 * g <= MAX_BUDGET))
                for cell in LIMIT}
    expected = {cell: frontier.search(cfg.frontier, solvable[cell]) for cell in LIMIT}
    rows = {r["variant"]: r for r in found.result().extra["frontier"]}
    for cell, e in expected.items():
        assert (rows[cell]["largest_solved"], rows[cell]["smallest_unsolved"]) == (
            e.largest_solved, e.smallest_unsolved)
    # rnn: stuck at 7 after a fair budget; gru: still learning at 17 when 1600 ran out
    assert rows["rnn"]["smallest_unsolved"] == 7 and rows["rnn"]["boundary"] == "stuck"
    assert rows["rnn"]["budget"] == MAX_BUDGET
    assert rows["gru"]["largest_solved"] == 16 and rows["gru"]["smallest_unsolved"] == 17
    assert rows["gru"]["boundary"] == "budget_limited" and rows["gru"]["budget"] == MAX_BUDGET


def test_a_resumed_frontier_asks_each_probe_with_its_last_budget_and_decides_the_same(tmp_path):
    cfg = from_dict(FRONTIER)

    def record(trial, summary):  # what a run leaves in each probe's directory
        d = tmp_path / trial.name
        d.mkdir(exist_ok=True)
        write_config(d / "config.yaml", to_dict(trial.cfg))
        write_summary(d / SUMMARY_FILE, summary)

    first = search.for_config(cfg, None, trials=expand(cfg))
    _drive(first, record)
    again = search.for_config(cfg, tmp_path, trials=expand(cfg), resume=True)
    asked = _drive(again)
    for (cell, gap), budgets in asked.items():
        assert budgets == [_expected(cfg.frontier, cell)[gap][-1]], (cell, gap)  # as left
    assert again.result().extra["frontier"] == first.result().extra["frontier"]
    replayed = FrontierSearch.replay(cfg, cfg.frontier, expand(cfg), tmp_path)
    assert replayed.extra["frontier"] == first.result().extra["frontier"]
    assert {e[0].cfg.train.steps for e in replayed.entries} >= {BASE, MAX_BUDGET}


def test_flat_seeds_are_stuck_only_after_a_fair_budget():
    fc = from_dict(FRONTIER).frontier
    ended = frontier.FrontierResult(12, 13, (2, 4, 8, 16, 11, 13, 12))
    flat = ["plateau", "stuck"]
    # the most a solved gap took was 1200 steps: flat after 1600 (max_budget) is no evidence
    assert frontier.boundary(fc, ended, flat, steps=1600, needed=1200) == "budget_limited"
    assert frontier.boundary(fc, ended, flat, steps=2400, needed=1200) == "stuck"
    assert frontier.boundary(fc, ended, ["learning", "stuck"], steps=2400,
                             needed=1200) == "budget_limited"  # 1 of 2 may still solve it
    assert frontier.boundary(fc, ended, ["learning", "stuck", "stuck"], steps=2400,
                             needed=1200) == "stuck"  # 1 of 3 cannot reach min_solved 0.5
    assert frontier.boundary(fc, frontier.FrontierResult(40, None, (40,)), None) == "not_reached"
    assert frontier.fair_budget(fc, 600) == 1200 and frontier.fair_budget(fc, 1200) == MAX_BUDGET


def test_max_budget_that_cannot_continue_exactly_is_a_config_error():
    for change, needle in [({"max_budget": 100}, "smaller than train.steps"),
                           ({}, "cosine"), ({"max_budget": 1600}, "multiple")]:
        raw = json.loads(json.dumps(FRONTIER))
        raw["frontier"].update(change)
        if needle == "cosine":
            raw["train"]["schedule"] = "cosine"
        if needle == "multiple":
            raw["train"]["steps"] = 250
        with pytest.raises(ConfigError, match=needle) as e:
            from_dict(raw)
        assert "\n" not in str(e.value) and "frontier.max_budget" in str(e.value)


def test_raised_budget_accepts_only_a_larger_train_steps(tmp_path):
    stored = to_dict(from_dict({k: v for k, v in FRONTIER.items() if k != "frontier"}))
    raise_to = lambda **kw: {**stored, "train": {**stored["train"], **kw}}  # noqa: E731
    path = tmp_path / "config.yaml"
    assert raised_budget(stored, raise_to(steps=400), path) == BASE
    assert raised_budget(stored, raise_to(steps=100), path) is None  # lowered: a difference
    assert raised_budget(stored, raise_to(steps=400, learning_rate=0.5), path) is None
    assert raised_budget(stored, stored, path) is None
    with pytest.raises(RunError, match="cosine"):
        cos = {**stored, "train": {**stored["train"], "schedule": "cosine"}}
        raised_budget(cos, {**cos, "train": {**cos["train"], "steps": 400}}, path)
    odd = {**stored, "train": {**stored["train"], "steps": 250}}
    with pytest.raises(RunError, match="not a multiple of train.eval_every"):
        raised_budget(odd, {**odd, "train": {**odd["train"], "steps": 400}}, path)


GRID = """\
name: raise
task: {name: adding, length: 6}
model: {cell: rnn, hidden_size: 4}
train: {optimizer: adam, learning_rate: 0.03, batch_size: 8, steps: 60, eval_every: 20,
        eval_batch_size: 16, seeds: 3}
sweep: {model.cell: [rnn, gru]}
diagnostics: {every: 40, batch_size: 4}
output: {progress: none, plots: false}
"""

TIMING = {"wall_time_s", "compile_s", "first_chunk_s", "seed_steps_per_s", "resumed_from_step",
          "budget_raised_from"}


def _files(run: Path, trial: str) -> tuple[str, str, dict]:
    summary = json.loads((run / trial / SUMMARY_FILE).read_text())
    return ((run / trial / "metrics.jsonl").read_text(),
            (run / trial / "diagnostics.jsonl").read_text(),
            {k: v for k, v in summary.items() if k not in TIMING})


def test_resume_with_a_raised_budget_equals_a_run_made_with_it_from_the_start(tmp_path,
                                                                            capsys):
    config = tmp_path / "raise.yaml"
    config.write_text(GRID)
    small, big = tmp_path / "small", tmp_path / "big"
    assert cli.main(["run", str(config), "--out", str(small)]) == 0
    before = (small / "cell-rnn" / SUMMARY_FILE).read_text()
    assert cli.main(["run", str(config), "--out", str(small), "--resume",
                     "--set", "train.steps=120"]) == 0
    assert cli.main(["run", str(config), "--out", str(big), "--set", "train.steps=120"]) == 0
    for trial in ("cell-rnn", "cell-gru"):
        # the same compiled program trained both (the budget is a runtime value): bit for bit
        assert _files(small, trial) == _files(big, trial), trial
        summary = json.loads((small / trial / SUMMARY_FILE).read_text())
        assert summary["steps"] == 120 and summary["budget_raised_from"] == 60
    assert json.loads(before)["steps"] == 60
    # a lower budget, or a raised one with another change, is refused as any other change
    capsys.readouterr()
    for extra in (["--set", "train.steps=100"],
                  ["--set", "train.steps=200", "--set", "train.learning_rate=0.01"]):
        code = cli.main(["run", str(config), "--out", str(small), "--resume", *extra])
        assert code != 0 and "different config" in capsys.readouterr().err
    assert _files(small, "cell-rnn") == _files(big, "cell-rnn")  # nothing was changed
