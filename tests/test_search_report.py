"""Searches that report (issue 27, item 6): a leaderboard sorted by the search's objective with
the best trial at the top of report.md, a parameter-vs-objective plot, optuna pruning on
evaluation chunks (pruned, not failed; not retrained on resume), parallel asks across devices
(independent of the order results arrive in), and a study that stores the values that
trained."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lstmjax as lj
from lstmjax.experiment import from_dict, leaderboard, search
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.report import collect
from lstmjax.experiment.rundir import SUMMARY_FILE, write_config, write_summary
from lstmjax.experiment.summary import SeedResult, TrialSummary

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "s",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "lstm", "hidden_size": 4},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8},
    "output": {"progress": "none"},
}
SPACE = {
    "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.options.forget_bias": {"uniform": [0.0, 3.0]},
    "model.cell": ["lstm", "gru"],
}


def _cfg(sweep, **sections):
    return from_dict({**BASE, **sections, "sweep": sweep})


def _fake_summary(trial, losses, diverged=()):
    """A summary of ``len(losses)`` seeds: seed i ends at ``losses[i]`` (diverged: no loss)."""
    seeds = []
    for i, loss in enumerate(losses):
        d = i in diverged
        seeds.append(SeedResult(seed=i, solved=False, steps_to_solve=None,
                                final_loss=None if d else loss, final_accuracy=None,
                                diverged=d, diverged_step=10 if d else None, steps_trained=20))
    return TrialSummary.build(seeds, trial=trial.name, index=trial.index, values=trial.values,
                              variant=trial.variant, task="adding", cell=trial.cfg.model.cell,
                              length=5, chance_loss=1 / 6, loss_type="mse", steps=20,
                              seeds=list(range(len(losses))))


def _write(ctx, trial, summary):
    tdir = ctx.run_dir / trial.name
    tdir.mkdir(parents=True, exist_ok=True)
    write_config(tdir / "config.yaml", to_dict(trial.cfg))
    (tdir / "metrics.jsonl").write_text("")
    write_summary(tdir / SUMMARY_FILE, summary)
    return summary


def _fake_losses(trial):
    """Three seeds per trial, losses that depend on the trial's index; trial 1 diverges on
    every seed (no statistic: the worst value), trial 2 on one seed."""
    k = trial.index
    losses = [round((0.37 * (k + 1) + 0.11 * s) % 1.0 + 0.05, 6) for s in range(3)]
    diverged = {0: (), 1: (0, 1, 2), 2: (1,)}.get(k % 4, ())
    return losses, diverged


def fake_train_job(job, ctx, slot):
    out = []
    for t in job.trials:
        losses, diverged = _fake_losses(t)
        out.append(_write(ctx, t, _fake_summary(t, losses, diverged)))
    return out


# ---- the leaderboard --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("random") / "run"
    cfg = _cfg({"method": "random", "num_trials": 5, "seed": 2,
                "objective": "median_final_loss", **SPACE})
    result = lj.experiment.run(cfg, out_dir=out, train_job=fake_train_job)
    return cfg, out, result


def _oracle_order(results_csv: Path) -> list[str]:
    """The trials of results.csv sorted by median final loss over the seeds that did not
    diverge (none: last), ties in the file's order -- computed from the CSV alone."""
    with open(results_csv) as f:
        rows = list(csv.DictReader(f))
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["trial"], [])
        if r["diverged"] == "False" and r["final_loss"] != "":
            by[r["trial"]].append(float(r["final_loss"]))
    order = list(by)
    value = {t: statistics.median(v) if v else math.inf for t, v in by.items()}
    return sorted(order, key=lambda t: (value[t], order.index(t)))


def test_leaderboard_order_equals_an_independent_sort_of_results_csv(random_run):
    cfg, out, result = random_run
    board = result["report"]["leaderboard"]
    expected = _oracle_order(out / "results.csv")
    assert [r["trial"] for r in board] == expected
    assert [r["rank"] for r in board] == [1, 2, 3, 4, 5]
    assert board[-1]["value"] == math.inf  # every seed diverged: the worst value, last
    # report.md: the best trial at the top (before the finding), the table in the same order
    text = (out / "report.md").read_text()
    assert text.index("## Best trial") < text.index("## Leaderboard") < text.index("**Finding.")
    best = text.split("## Best trial", 1)[1].split("##", 1)[0]
    assert f"**{expected[0]}**: median_final_loss" in best
    assert "solved 0/3 (0–56%)" in best  # the Wilson interval of 0 of 3 seeds
    assert "trained 20/20 steps" in best
    table = text.split("## Leaderboard", 1)[1].split("\n\n**Finding.", 1)[0]
    listed = [ln.split(" | ")[1] for ln in table.splitlines() if ln.startswith("| ") and
              ln.split(" | ")[0].strip("| ").isdigit()]
    assert listed == expected
    # results.csv keeps its columns
    with open(out / "results.csv") as f:
        header = next(csv.reader(f))
    assert "rank" not in header and header[:16] == lj.experiment.report.RESULT_COLUMNS


def test_a_searchs_finding_names_its_best_trial_not_a_gap_per_trial(random_run):
    cfg, out, result = random_run
    finding = result["report"]["finding"]
    best = _oracle_order(out / "results.csv")[0]
    with open(out / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["trial"] == best]
    loss = statistics.median(float(r["final_loss"]) for r in rows if r["diverged"] == "False")
    assert "search's best trial is" in finding and f"median_final_loss {loss:.4g}" in finding
    assert "5 of 5 trials finished" in finding and "fails at" not in finding
    for key in result["trials"][0]["values"]:  # named by its values
        assert f"{key.rsplit('.', 1)[-1]}=" in finding


def test_random_search_without_objective_ranks_by_solved_fraction():
    cfg = _cfg({"method": "random", "num_trials": 2, **SPACE})
    space = leaderboard.objective_of(cfg)
    assert (space.objective, space.direction) == ("solved_fraction", "maximize")


def test_a_grid_has_no_leaderboard(tmp_path):
    cfg = _cfg({"model.cell": ["lstm", "gru"]})
    result = lj.experiment.run(cfg, out_dir=tmp_path / "g", train_job=fake_train_job)
    assert "leaderboard" not in result["report"]
    assert "## Leaderboard" not in (tmp_path / "g" / "report.md").read_text()


def test_parameter_plot_has_one_panel_per_searched_parameter(random_run):
    cfg, out, result = random_run
    path = out / "plots" / "objective_vs_parameters.png"
    assert str(path) in result["report"]["plots"]
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert "(plots/objective_vs_parameters.png)" in (out / "report.md").read_text()
    _, trials = collect(out)
    fig = leaderboard.parameter_figure(cfg, trials)
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == list(SPACE)
    assert [ax.get_xscale() for ax in axes] == ["log", "linear", "linear"]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["lstm", "gru"]
    assert all(ax.get_ylabel() == "median_final_loss" for ax in axes)
    # each panel draws the ranked trials with a finite objective (4 of 5) plus the best's star
    for ax in axes:
        drawn = sum(len(c.get_offsets()) for c in ax.collections)
        assert drawn == 4 + 1


# ---- the study stores what trained -------------------------------------------------------------


def test_study_stores_the_values_that_trained(tmp_path):
    optuna = pytest.importorskip("optuna")
    cfg = _cfg({"method": "optuna", "num_trials": 4, "seed": 0,
                "objective": "median_final_loss", **SPACE})
    trained = {}

    def remember(job, ctx, slot):
        for t in job.trials:
            trained[t.name] = t
        return fake_train_job(job, ctx, slot)

    lj.experiment.run(cfg, out_dir=tmp_path / "o", train_job=remember, report=False)
    study = optuna.load_study(study_name=search.STUDY_NAME,
                              storage=f"sqlite:///{tmp_path / 'o' / search.STUDY_FILE}")
    names = [t.name for t in search.collect(tmp_path / "o", cfg)]
    assert len(study.trials) == 4 and sorted(names) == sorted(trained)
    for ft, name in zip(study.trials, names, strict=True):
        t = trained[name]
        assert ft.params["train.learning_rate"] == t.cfg.train.learning_rate  # exactly
        assert ft.params["model.options.forget_bias"] == t.values["model.options.forget_bias"]
        assert ft.params["model.cell"] == t.cfg.model.cell
        if t.cfg.model.cell == "lstm":
            assert ft.params["model.options.forget_bias"] == t.cfg.model.options["forget_bias"]
        assert f"{ft.params['train.learning_rate']:g}" in name


# ---- parallel asks, independent of arrival order ----------------------------------------------


def _drive(cfg, run_dir, order):
    """Drive an optuna search two trials at a time, telling each pair's results in ``order``
    ("first" or "last": the earlier-asked trial's result arrives first or last); returns the
    trials in the order they were asked."""
    found = search.for_config(cfg, run_dir)
    found.width = 2
    asked_all, pending = [], []
    while True:
        asked = found.ask()
        assert len(pending) + len(asked) <= 2  # never more than one per device
        asked_all += asked
        pending += asked
        if not pending:
            return asked_all, found.result()
        done = pending.pop(0 if order == "first" else -1)
        lr, fb = done.values["train.learning_rate"], done.values["model.options.forget_bias"]
        loss = (math.log10(lr) + 2.5) ** 2 + (fb - 1.0) ** 2  # an optimum at (10^-2.5, 1)
        found.tell(done, _fake_summary(done, [loss, loss + 0.1]))


def test_parallel_asks_do_not_depend_on_the_order_results_arrive_in(tmp_path):
    pytest.importorskip("optuna")
    cfg = _cfg({"method": "optuna", "num_trials": 8, "seed": 1,
                "objective": "median_final_loss", **SPACE})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, result_a = _drive(cfg, tmp_path / "a", "first")
    b, result_b = _drive(cfg, tmp_path / "b", "last")
    assert len(a) == 8
    assert [t.name for t in a] == [t.name for t in b]
    assert result_a.extra["best"] == result_b.extra["best"]


_TWO_DEVICES = textwrap.dedent(r"""
    import json, sys, threading
    from pathlib import Path
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    sys.path.insert(0, sys.argv[2])
    from test_search_report import _cfg, fake_train_job, SPACE
    from lstmjax.experiment.executor import run_trials

    lock = threading.Lock()
    state = {"now": 0, "most": 0, "calls": 0}
    both = threading.Barrier(2, timeout=60)  # the first two trials meet: both in flight

    def watched(job, ctx, slot):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
            first_two = state["calls"] <= 2
        try:
            if first_two:
                both.wait()
            return fake_train_job(job, ctx, slot)
        finally:
            with lock:
                state["now"] -= 1

    cfg = _cfg({"method": "optuna", "num_trials": 4, "seed": 0,
                "objective": "median_final_loss", **SPACE})
    r = run_trials(cfg, Path(sys.argv[1]) / "run", devices=2, train_job=watched)
    print(json.dumps({"most": state["most"], "calls": state["calls"],
                      "trials": len(r["trials"]), "failed": r["failed"],
                      "devices": r["devices"]}))
""")


def test_optuna_asks_one_trial_per_device_at_once_on_two_devices(tmp_path):
    pytest.importorskip("optuna")
    script = tmp_path / "two.py"
    script.write_text(_TWO_DEVICES)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(ROOT / "tests")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["devices"] == ["cpu:0", "cpu:1"]
    assert found["failed"] == []  # (a broken barrier would fail the first two trials)
    assert found["most"] == 2 and found["calls"] == 4 and found["trials"] == 4


# ---- pruning ------------------------------------------------------------------------------------


def test_pruned_trials_are_recorded_as_pruned_not_failed_and_resume_does_not_retrain_them(
        tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from lstmjax.experiment import job as job_module
    from lstmjax.experiment.search import pruning

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.setattr(pruning, "make_pruner", lambda optuna, space: AlwaysPrune())
    cfg = _cfg({"method": "optuna", "num_trials": 2, "seed": 0,
                "objective": "median_final_loss", "pruner": "median",
                "train.learning_rate": {"loguniform": [1.0e-3, 1.0e-1]}},
               train={**BASE["train"], "steps": 30, "seeds": 2})
    calls = []

    def counting(job, ctx, slot):
        calls.append(job.name)
        return job_module.train_job(job, ctx, slot)

    out = tmp_path / "run"
    result = lj.experiment.run(cfg, out_dir=out, train_job=counting)
    assert result["failed"] == [] and len(calls) == 2
    assert [t["pruned_at_step"] for t in result["trials"]] == [10, 10]  # the first chunk
    for t in result["trials"]:
        assert all(s["steps_trained"] == 10 for s in t["per_seed"])
        assert not (out / t["trial"] / "failed.json").exists()
    study = optuna.load_study(study_name=search.STUDY_NAME,
                              storage=f"sqlite:///{out / search.STUDY_FILE}")
    assert [ft.state for ft in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    # the value reported at the pruned step is the objective of the summary it wrote
    for ft, t in zip(study.trials, result["trials"], strict=True):
        summary = TrialSummary.from_json(t)
        assert ft.intermediate_values == {10: search.objective_value(summary, cfg.search)}
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["outcome"] for r in rows if r["solved"] == "False"} == {"pruned"}
    assert {r["status"] for r in result["report"]["leaderboard"]} == {"pruned"}
    assert "pruned at step 10" in (out / "report.md").read_text()

    again = lj.experiment.run(cfg, out_dir=out, resume=True, train_job=counting)
    assert len(calls) == 2  # nothing retrained
    assert again["trials"] == result["trials"] and again["failed"] == []
    assert [ft.state for ft in optuna.load_study(
        study_name=search.STUDY_NAME, storage=f"sqlite:///{out / search.STUDY_FILE}").trials
    ] == [optuna.trial.TrialState.PRUNED] * 2


def test_interim_objective_at_the_end_equals_the_summarys(tmp_path):
    """The value a chunk reports is the objective as the final summary defines it: computed
    from the metric lines at the last step, it equals the summary's."""
    from lstmjax.experiment.rundir import read_metrics
    from lstmjax.experiment.search.pruning import interim_summary
    from lstmjax.experiment.space import OBJECTIVES
    from lstmjax.experiment.sweep import expand

    cfg = _cfg({"train.learning_rate": [0.05]}, train={**BASE["train"], "seeds": 3,
                                                       "early_stop": False})
    result = lj.experiment.run(cfg, out_dir=tmp_path / "r", report=False)
    trial = expand(cfg)[0]
    final = TrialSummary.from_json(result["trials"][0])
    lines = read_metrics(tmp_path / "r" / trial.name / "metrics.jsonl")
    interim = interim_summary(trial, lines, 20)
    for name in OBJECTIVES:
        assert getattr(interim, name) == getattr(final, name), name
