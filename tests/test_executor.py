"""The executor's loop (ask -> plan -> check -> train -> tell) against a fake search and a fake
job trainer (its ``train_job`` seam): it trains exactly what it is asked, tells each result once
(None for a failure), and a whole ``lstmjax run`` expands the sweep once. Nothing compiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lstmjax import cli
from lstmjax.experiment import from_dict, job, loggers
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.executor import Executor
from lstmjax.experiment.job import JobContext
from lstmjax.experiment.progress import Reporter
from lstmjax.experiment.rundir import FAILED_FILE, SUMMARY_FILE, write_config, write_summary
from lstmjax.experiment.search import SearchResult
from lstmjax.experiment.space import SearchSpace
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import expand

ROOT = Path(__file__).resolve().parents[1]

CFG = {
    "name": "fake",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "rnn", "hidden_size": 4},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 4, "seeds": 2},
    "sweep": {"model.cell": ["rnn", "gru", "lstm"], "task.length": [5, 7]},
    "output": {"progress": "none", "plots": False},
}


def _summary(trial, solved: bool) -> TrialSummary:
    seeds = list(trial.cfg.train.seeds)
    per_seed = [SeedResult(seed=s, solved=solved, steps_to_solve=10 if solved else None,
                           final_loss=0.01 if solved else 0.2, final_accuracy=None,
                           diverged=False, diverged_step=None, steps_trained=20)
                for s in seeds]
    cfg = trial.cfg
    return TrialSummary.build(per_seed, trial=trial.name, index=trial.index, values=trial.values,
                              variant=trial.variant, task=cfg.task.name, cell=cfg.model.cell,
                              length=cfg.task.length, chance_loss=1 / 6, loss_type="mse",
                              steps=cfg.train.steps, seeds=seeds)


class FakeSearch:
    """Asks ``rounds`` of trials, the next round once every trial of the last one was told;
    records every tell."""

    fixed, streams = False, False

    def __init__(self, rounds):
        self.rounds = [list(r) for r in rounds]
        self.upfront = self.largest = tuple(t for r in rounds for t in r)
        self.size = len(self.upfront)
        self.asked: list[str] = []
        self.told: list[tuple[str, bool]] = []  # (name, whether a summary came)
        self._waiting: set[str] = set()

    def ask(self):
        if self._waiting or not self.rounds:
            return []
        batch = self.rounds.pop(0)
        self._waiting = {t.name for t in batch}
        self.asked += [t.name for t in batch]
        return batch

    def tell(self, trial, summary):
        assert trial.name in self._waiting, f"{trial.name} told without being asked"
        self._waiting.discard(trial.name)
        self.told.append((trial.name, summary is not None))

    def result(self):
        return SearchResult()


class FakeTrainer:
    """The ``train_job`` seam: records each job's trials, raises for ``fail``, else writes
    and returns a summary."""

    def __init__(self, fail=()):
        self.fail, self.trained = set(fail), []

    def __call__(self, j, ctx, slot):
        self.trained += [t.name for t in j.trials]
        if any(t.name in self.fail for t in j.trials):
            raise ValueError("injected failure")
        return [_summary(t, True) for t in j.trials]


def test_executor_trains_exactly_what_is_asked_and_tells_each_result_once(tmp_path):
    trials = expand(from_dict(CFG))
    assert len(trials) == 6
    search = FakeSearch([trials[:4], trials[4:5]])  # trials[5] is never asked
    failing = trials[1].name
    trainer = FakeTrainer(fail=[failing])
    ctx = JobContext(tmp_path, Reporter(), loggers.Loggers(), search.size)
    failures = Executor(search, ctx, train_job=trainer).run()

    asked = [t.name for t in trials[:5]]
    assert search.asked == asked
    assert sorted(trainer.trained) == sorted(asked)  # each asked trial trained once, no other
    assert sorted(name for name, _ in search.told) == sorted(asked)  # each told exactly once
    assert dict(search.told) == {name: name != failing for name in asked}  # failed: None
    assert [f["trial"] for f in failures] == [failing]
    assert "injected failure" in failures[0]["error"]
    assert json.loads((tmp_path / failing / FAILED_FILE).read_text())["error"]
    assert not (tmp_path / trials[5].name).exists()


def test_executor_reads_back_a_finished_trial_instead_of_training_it(tmp_path):
    from lstmjax.experiment.rundir import TrialState

    trials = expand(from_dict(CFG))[:2]
    done = trials[0]
    (tmp_path / done.name).mkdir()
    write_config(tmp_path / done.name / "config.yaml", to_dict(done.cfg))
    (tmp_path / done.name / "metrics.jsonl").write_text("")
    write_summary(tmp_path / done.name / SUMMARY_FILE, _summary(done, False))
    search = FakeSearch([trials])
    trainer = FakeTrainer()
    ctx = JobContext(tmp_path, Reporter(), loggers.Loggers(), search.size)
    Executor(search, ctx, resume=True, train_job=trainer).run()
    assert ctx.states[done.name] is TrialState.FINISHED
    assert trainer.trained == [trials[1].name]
    assert dict(search.told) == {done.name: True, trials[1].name: True}


def _fake_training(j, ctx, slot):
    """Stands in for a job's training: writes each trial's files as training would; a probe
    solves gaps up to 40 (so the quickstart's frontier search goes up, then bisects)."""
    out = []
    for t in j.trials:
        tdir = ctx.dir_of(t)
        tdir.mkdir(parents=True, exist_ok=True)
        write_config(tdir / "config.yaml", to_dict(t.cfg))
        (tdir / "metrics.jsonl").write_text("")
        summary = _summary(t, t.cfg.task.length <= 40)
        write_summary(tdir / SUMMARY_FILE, summary)
        out.append(summary)
    return out


def test_lstmjax_run_quickstart_expands_the_sweep_once(tmp_path, monkeypatch, capsys):
    """`lstmjax run configs/quickstart.yaml`, training faked: the sweep's points are
    generated once for the whole command (validation, memory sizing, float64 check, the
    search, the report), and the frontier search still ran and was reported."""
    calls = []
    real_grid = SearchSpace.grid

    def counting_grid(self):
        calls.append(1)
        return real_grid(self)

    monkeypatch.setattr(SearchSpace, "grid", counting_grid)
    monkeypatch.setattr(job, "train_job", _fake_training)
    out = tmp_path / "run"
    rc = cli.main(["run", str(ROOT / "configs" / "quickstart.yaml"), "--out", str(out),
                   "--progress", "none", "--compile-cache", "off",
                   "--set", "output.plots=false"])
    assert rc == 0, capsys.readouterr().err
    assert len(calls) == 1
    frontier = (out / "frontier.csv").read_text().splitlines()
    assert len(frontier) == 4 and all(",40," in row for row in frontier[1:])


@pytest.mark.parametrize("module", ["executor", "job", "trial_run"])
def test_no_function_of_the_training_loop_takes_more_than_five_positional_parameters(module):
    import ast

    path = ROOT / "lstmjax" / "experiment" / f"{module}.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [a.arg for a in node.args.posonlyargs + node.args.args]
            positional = [n for n in names if n not in ("self", "cls")]
            assert len(positional) <= 5, f"{module}.{node.name}: {positional}"


FRONTIER = {**CFG, "sweep": {"model.cell": ["rnn", "gru"]},
            "frontier": {"key": "task.length", "start": 4, "max": 64, "factor": 2,
                         "resolution": 0.1, "min_solved": 0.5}}


def test_frontier_search_asks_what_plan_decides_and_can_ask_a_probe_again_with_more_steps():
    from lstmjax.experiment import frontier, search

    cfg = from_dict(FRONTIER)
    found = search.for_config(cfg, None, trials=expand(cfg))
    limits = {"rnn": 11, "gru": 40}  # the largest gap each variant solves
    probed: dict[str, list[int]] = {"rnn": [], "gru": []}
    while asked := found.ask():
        for t in asked:
            probed[t.cfg.model.cell].append(t.cfg.task.length)
            found.tell(t, _summary(t, t.cfg.task.length <= limits[t.cfg.model.cell]))
    expected = {cell: frontier.search(cfg.frontier, lambda g, limit=limit: float(g <= limit))
                for cell, limit in limits.items()}  # the oracle: the pure search, same outcomes
    assert probed == {cell: list(e.probes) for cell, e in expected.items()}
    rows = found.result().extra["frontier"]
    assert [(r["variant"], r["largest_solved"], r["smallest_unsolved"]) for r in rows] == [
        (cell, e.largest_solved, e.smallest_unsolved) for cell, e in expected.items()]
    assert rows[0]["largest_solved"] == 11 and 38 <= rows[1]["largest_solved"] <= 40
    told = len(found.result().summaries)

    probe = found.result().summaries[0].trial  # asked again with more steps, same directory
    found.extend(probe, steps=40)
    (again,) = found.ask()
    assert again.name == probe and again.cfg.train.steps == 40
    assert again.cfg.model_copy(update={"train": cfg.train}) == expand(cfg)[0].cfg.model_copy(
        update={"train": cfg.train, "task": again.cfg.task})
    found.tell(again, _summary(again, True))
    assert found.ask() == [] and len(found.result().summaries) == told  # replaced, not added
