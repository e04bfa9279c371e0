"""Search beyond grids (lstmjax.experiment.space, lstmjax.experiment.search): random search is
reproducible and respects its distributions, bad specs are one-line config errors, an optuna
study on a fake objective converges and resumes without repeating trials, and one tiny random
search trains end to end."""

from __future__ import annotations

import csv
import math
import statistics
import sys

import pytest

import lstmjax as lj
from lstmjax import cli
from lstmjax.experiment import ConfigError, expand, from_dict, search, space
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import SUMMARY_FILE, write_config, write_summary
from lstmjax.experiment.summary import SeedResult, TrialSummary

BASE = {
    "name": "s",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "lstm", "hidden_size": 4},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8},
    "output": {"progress": "none", "plots": False},
}
RANDOM = {
    "method": "random", "num_trials": 6, "seed": 3,
    "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.options.forget_bias": {"uniform": [0.0, 3.0]},
    "model.hidden_size": {"int": [4, 8]},
    "model.cell": ["lstm", "gru"],
}  # fmt: skip
OPTUNA = {
    "method": "optuna", "num_trials": 30, "seed": 0, "objective": "median_final_loss",
    "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.options.forget_bias": {"uniform": [0.0, 3.0]},
}  # fmt: skip


def _cfg(sweep, **sections):
    return from_dict({**BASE, **sections, "sweep": sweep})


# ---- random search -----------------------------------------------------------------------------


def test_random_search_same_seed_same_trials_in_the_same_order():
    a, b = expand(_cfg(RANDOM)), expand(_cfg(dict(RANDOM)))
    assert [(t.name, t.values) for t in a] == [(t.name, t.values) for t in b]
    assert len(a) == 6 and len({t.name for t in a}) == 6
    other = expand(_cfg({**RANDOM, "seed": 4}))
    assert [t.values for t in other] != [t.values for t in a]
    # draws go trial after trial: a longer search starts with the trials of a shorter one
    longer = expand(_cfg({**RANDOM, "num_trials": 9}))
    assert [t.name for t in longer[:6]] == [t.name for t in a]


def test_random_trials_are_ordinary_trials_named_from_their_values():
    for t in expand(_cfg(RANDOM)):
        lr, fb = t.values["train.learning_rate"], t.values["model.options.forget_bias"]
        assert t.cfg.train.learning_rate == lr and t.cfg.model.hidden_size == t.values[
            "model.hidden_size"]
        assert t.cfg.sweep == {}
        # options reach only the cells that take them, as in a grid
        assert t.cfg.model.options == ({"forget_bias": fb} if t.cfg.model.cell == "lstm" else {})
        assert t.name == (f"learning_rate-{lr:g}__forget_bias-{fb:g}__hidden_size-"
                          f"{t.cfg.model.hidden_size}__cell-{t.cfg.model.cell}")
        assert len(t.name) < 80


def test_draws_respect_their_distributions():
    s = space.parse({
        "method": "random", "num_trials": 1500, "seed": 1,
        "lr": {"loguniform": [1.0e-4, 1.0e-1]}, "u": {"uniform": [-1.0, 2.0]},
        "n": {"int": [3, 6]}, "c": {"choice": ["a", "b", "c"]},
        "l": {"distribution": "loguniform", "low": 1.0, "high": 100.0},
    })
    points = s.sample()
    assert len(points) == 1500
    lr = [p["lr"].value for p in points]
    u = [p["u"].value for p in points]
    n = [p["n"].value for p in points]
    assert all(1e-4 <= x <= 1e-1 for x in lr) and all(-1.0 <= x <= 2.0 for x in u)
    assert all(isinstance(x, int) for x in n) and set(n) == {3, 4, 5, 6}  # inclusive
    assert {p["c"].value for p in points} == {"a", "b", "c"}
    # log scale: the median is near the geometric mean (a uniform draw's would be near 0.05)
    assert abs(math.log10(statistics.median(lr)) - math.log10(math.sqrt(1e-4 * 1e-1))) < 0.1
    assert abs(math.log10(statistics.median(p["l"].value for p in points)) - 1.0) < 0.1
    assert abs(statistics.mean(u) - 0.5) < 0.1
    # drawn numbers keep 4 significant digits: the value trained is the value in the name
    assert all(float(f"{x:.3e}") == x for x in lr + u)
    assert min(n.count(k) for k in (3, 4, 5, 6)) > 1500 / 4 * 0.8


def test_design_contract_example_loads(tmp_path):
    """DESIGN.md's line: the long form of a distribution."""
    path = tmp_path / "d.yaml"
    path.write_text(
        "task: {name: adding, length: 5}\n"
        "model: {cell: lstm, hidden_size: 4}\n"
        "sweep:    {method: random, num_trials: 20, train.learning_rate: {distribution: "
        "loguniform, low: 1e-4, high: 1e-1}}\n"
    )
    trials = expand(lj.experiment.load_config(path))
    assert len(trials) == 20
    assert all(1e-4 <= t.cfg.train.learning_rate <= 1e-1 for t in trials)


def test_grid_is_the_default_method_and_unchanged():
    sweep = {"model.cell": ["rnn", "gru"], "task.length": [4, 6]}
    names = [t.name for t in expand(_cfg(sweep))]
    assert names == ["cell-rnn__length-4", "cell-rnn__length-6", "cell-gru__length-4",
                     "cell-gru__length-6"]
    assert [t.name for t in expand(_cfg({"method": "grid", **sweep}))] == names


def test_a_grouped_axis_is_a_choice_in_a_random_search():
    cfg = _cfg({"method": "random", "num_trials": 4,
                "variant": [{"name": "slow", "train.learning_rate": 1e-3},
                            {"name": "fast", "train.learning_rate": 1e-2}],
                "model.options.forget_bias": {"uniform": [0.0, 1.0]}})
    for t in expand(cfg):
        lr = {"slow": 1e-3, "fast": 1e-2}[t.values["variant"]]
        assert t.cfg.train.learning_rate == lr
        assert t.name.startswith(f"variant-{t.values['variant']}__forget_bias-")


# ---- bad specs: one line, with the key path ---------------------------------------------------


def _rnd(**axes):
    return {"method": "random", "num_trials": 3, **axes}


LR = "train.learning_rate"
BAD = [
    ("unknown-distribution", _rnd(**{LR: {"logunifrom": [1e-4, 1e-2]}}),
     "sweep.train.learning_rate: unknown distribution 'logunifrom' (did you mean loguniform?)"),
    ("long-form-unknown-distribution",
     _rnd(**{LR: {"distribution": "gauss", "low": 1e-4, "high": 1e-2}}),
     "sweep.train.learning_rate.distribution: unknown distribution 'gauss'"),
    ("long-form-unknown-key", _rnd(**{LR: {"distribution": "uniform", "low": 0.1, "hi": 1}}),
     "sweep.train.learning_rate.hi: unknown key (did you mean sweep.train.learning_rate.high?)"),
    ("low-above-high", _rnd(**{LR: {"loguniform": [1e-2, 1e-4]}}),
     "sweep.train.learning_rate.loguniform: low 0.01 must be smaller than high 0.0001"),
    ("low-equals-high", _rnd(**{"model.hidden_size": {"int": [8, 8]}}),
     "sweep.model.hidden_size.int: low 8 must be smaller than high 8"),
    ("loguniform-low-zero", _rnd(**{LR: {"loguniform": [0, 1e-2]}}),
     "sweep.train.learning_rate.loguniform: low must be > 0 on a log scale, got 0"),
    ("int-bounds-not-integers", _rnd(**{"model.hidden_size": {"int": [4.5, 16]}}),
     "sweep.model.hidden_size.int: int bounds must be integers, got [4.5, 16]"),
    ("bounds-not-a-pair", _rnd(**{LR: {"uniform": [0.1]}}),
     "sweep.train.learning_rate.uniform: expected [low, high], got [0.1]"),
    ("bound-out-of-range", _rnd(**{"model.hidden_size": {"int": [4, 2_000_000]}}),
     "sweep.model.hidden_size.int[1]: expected an integer <= 1048576, got 2000000"),
    ("bound-invalid-for-key", _rnd(**{LR: {"uniform": [-1.0, 1.0]}}),
     "sweep.train.learning_rate.uniform[0]: expected a number > 0.0, got -1.0"),
    ("unknown-cell-choice", _rnd(**{"model.cell": {"choice": ["lstm", "lstn", "gru"]}}),
     "sweep.model.cell.choice[1]: unknown cell 'lstn' (did you mean lstm?)"),
    ("unknown-cell-list", _rnd(**{"model.cell": ["gru", "lstn", "rnn"]}),
     "sweep.model.cell[1]: unknown cell 'lstn' (did you mean lstm?)"),
    ("empty-choice", _rnd(**{"model.cell": {"choice": []}}),
     "sweep.model.cell.choice: empty list (give at least one value to choose from)"),
    ("num-trials-zero", {**_rnd(**{LR: {"uniform": [0.1, 1]}}), "num_trials": 0},
     "sweep.num_trials: expected an integer >= 1, got 0"),
    ("num-trials-missing", {"method": "random", LR: {"uniform": [0.1, 1]}},
     "sweep.num_trials: required key missing"),
    ("num-trials-above-space", {**_rnd(**{"model.cell": ["lstm", "gru"]}), "num_trials": 5},
     "sweep.num_trials: 5 is more than the 2 distinct points of the search space"),
    ("seed-negative", {**_rnd(**{LR: {"uniform": [0.1, 1]}}), "seed": -1},
     "sweep.seed: expected an integer in [0, 2^32), got -1"),
    ("no-axes", {"method": "random", "num_trials": 3},
     "sweep.method: random needs at least one key to search"),
    ("method-unknown", {"method": "radnom", LR: [0.1]},
     "sweep.method: 'radnom' is not one of grid, random, optuna (did you mean random?)"),
    ("method-misspelt-key", {"methd": "random", LR: [0.1]},
     "sweep.methd: unknown key (did you mean sweep.method?)"),
    ("reserved-group-name", {"seed": [{"train.learning_rate": 0.1}], LR: [0.1]},
     "sweep.seed: 'seed' is a reserved key of the sweep"),
    ("num-trials-in-a-grid", {"num_trials": 3, LR: [0.1]},
     "sweep.num_trials: only used by sweep.method random or optuna (this sweep's method is "
     "grid)"),
    ("objective-in-a-grid", {"objective": "solved_fraction", LR: [0.1]},
     "sweep.objective: only used by sweep.method random or optuna (this sweep's method is "
     "grid)"),
    ("direction-without-objective-in-a-random-search",
     {**_rnd(**{LR: {"uniform": [0.1, 1]}}), "direction": "minimize"},
     "sweep.direction: given without sweep.objective"),
    ("pruner-in-a-random-search", {**_rnd(**{LR: {"uniform": [0.1, 1]}}), "pruner": "median"},
     "sweep.pruner: only used by sweep.method optuna (this sweep's method is random)"),
    ("pruner-unknown", {**OPTUNA, "pruner": "medain"},
     "sweep.pruner.name: 'medain' is not one of none, median, successive_halving, hyperband "
     "(did you mean median?)"),
    ("pruner-unknown-setting", {**OPTUNA, "pruner": {"name": "median", "n_warmup": 2}},
     "sweep.pruner.n_warmup: not a setting of the median pruner (did you mean n_warmup_steps?)"),
    ("pruner-bad-setting", {**OPTUNA, "pruner": {"name": "hyperband", "reduction_factor": 1}},
     "sweep.pruner.reduction_factor: expected an integer >= 2, got 1"),
    ("pruner-not-a-name", {**OPTUNA, "pruner": 3},
     "sweep.pruner: expected one of none, median, successive_halving, hyperband or a mapping"),
    ("distribution-in-a-grid", {LR: {"loguniform": [1e-4, 1e-2]}},
     "sweep.train.learning_rate: a distribution needs sweep.method random or optuna"),
    ("grid-value-not-a-list", {"task.length": 5},
     "sweep.task.length: expected a non-empty list of values to sweep over, got 5"),
    ("objective-unknown", {**OPTUNA, "objective": "solved_frac"},
     "sweep.objective: unknown metric 'solved_frac' (did you mean solved_fraction?)"),
    ("objective-missing", {k: v for k, v in OPTUNA.items() if k != "objective"},
     "sweep.objective: required key missing"),
    ("direction-unknown", {**OPTUNA, "direction": "minimise"},
     "sweep.direction: 'minimise' is not one of maximize, minimize (did you mean minimize?)"),
]


@pytest.mark.parametrize("sweep,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_search_spec_is_a_one_line_config_error(sweep, expected):
    with pytest.raises(ConfigError) as e:
        _cfg(sweep)
    msg = str(e.value)
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_frontier_takes_a_grid_sweep():
    with pytest.raises(ConfigError, match="^frontier: cannot be combined with sweep.method "
                                          "random"):
        _cfg(_rnd(**{LR: {"uniform": [0.1, 1]}}), frontier={"start": 5, "max": 10})


def test_bad_spec_through_the_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "sweep": _rnd(**{LR: {"loguniform": [0, 1]}})}))
    rc = cli.main(["run", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("error: sweep.train.learning_rate.loguniform: low must be > 0 "
                               "on a log scale, got 0\n")
    assert not (tmp_path / "run").exists()


def test_optuna_without_its_package_names_the_extra(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails
    expected = ("sweep.method: optuna needs the optional package optuna: "
                "pip install 'lstmjax[optuna]'")
    with pytest.raises(ConfigError) as e:
        _cfg(OPTUNA)
    assert str(e.value) == expected
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump({**BASE, "sweep": OPTUNA}))
    rc = cli.main(["run", str(path), "--out", str(tmp_path / "run")])
    assert rc == 2 and capsys.readouterr().err == f"error: {expected}\n"
    assert not (tmp_path / "run").exists()


def test_objectives_are_statistics_of_a_trial_summary():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrialSummary)}
    assert set(space.OBJECTIVES) <= fields
    s = space.parse(OPTUNA)
    assert s.direction == "minimize"  # the objective's natural direction
    summary = _summary_for("x", 0, {}, None)
    assert search.objective_value(summary, s) == math.inf  # no statistic: the worst value
    maximize = space.parse({**OPTUNA, "objective": "solved_fraction"})
    assert maximize.direction == "maximize"
    assert search.objective_value(summary, maximize) == 0.0


# ---- optuna on a fake objective (no training) -----------------------------------------------


OPT_LR, OPT_FB = 10**-2.5, 1.0


def _loss(lr: float, fb: float) -> float:
    """A known optimum at (OPT_LR, OPT_FB)."""
    return (math.log10(lr) - math.log10(OPT_LR)) ** 2 + (fb - OPT_FB) ** 2


def _summary_for(name, index, values, loss):
    seed = SeedResult(seed=0, solved=False, steps_to_solve=None, final_loss=loss,
                      final_accuracy=None, diverged=False, diverged_step=None, steps_trained=20)
    return TrialSummary.build([seed], trial=name, index=index, values=values, variant=name,
                              task="adding", cell="lstm", length=5, chance_loss=1 / 6,
                              loss_type="mse", steps=20, seeds=[0])


class FakeTraining:
    """Stands in for training: writes the trial's files as the runner would and returns a
    summary whose final loss is :func:`_loss` of the trial's values. ``interrupt_at``: raise
    KeyboardInterrupt instead, on that call, after the trial's directory was started."""

    def __init__(self, run_dir, interrupt_at=None):
        self.run_dir, self.interrupt_at = run_dir, interrupt_at
        self.calls: list[tuple[str, str]] = []

    def __call__(self, trial, state):
        self.calls.append((trial.name, state))
        tdir = self.run_dir / trial.name
        tdir.mkdir(parents=True, exist_ok=True)
        write_config(tdir / "config.yaml", to_dict(trial.cfg))
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        (tdir / "metrics.jsonl").write_text("")
        summary = _summary_for(trial.name, trial.index, trial.values,
                               _loss(trial.cfg.train.learning_rate,
                                     trial.cfg.model.options["forget_bias"]))
        write_summary(tdir / SUMMARY_FILE, summary)
        return summary


def _values(summaries):
    return [s.median_final_loss for s in summaries]


def test_optuna_converges_toward_the_known_optimum(tmp_path):
    pytest.importorskip("optuna")
    cfg = _cfg(OPTUNA)
    fake = FakeTraining(tmp_path)
    summaries, best = search.run_optuna(cfg, tmp_path, fake)
    assert len(fake.calls) == len(summaries) == 30  # no repeats on a continuous space
    assert (tmp_path / search.STUDY_FILE).is_file()
    losses = _values(summaries)
    assert best["value"] == min(losses) and best["objective"] == "median_final_loss"
    assert best["value"] < 0.05  # within ~0.2 decades of the lr and ~0.2 of the bias
    lr, fb = best["values"]["train.learning_rate"], best["values"]["model.options.forget_bias"]
    assert abs(math.log10(lr / OPT_LR)) < 0.25 and abs(fb - OPT_FB) < 0.25
    # after the 10 random start-up trials TPE proposes points near the optimum: random draws
    # would land within loss 0.25 (a disc of area 0.79 in the 3 x 3 space) 1.7 times in 20
    assert sum(v < 0.25 for v in losses[10:]) >= 4
    # the study's trials are the run's trials, in the order proposed (for the report)
    assert [t.name for t in search.collect(tmp_path, cfg)] == [s.trial for s in summaries]


def test_optuna_resume_continues_the_study_without_repeating_trials(tmp_path):
    pytest.importorskip("optuna")
    cfg = _cfg({**OPTUNA, "num_trials": 6})
    for d in ("run", "straight"):
        (tmp_path / d).mkdir()
    first = FakeTraining(tmp_path / "run", interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        search.run_optuna(cfg, tmp_path / "run", first)
    done = [name for name, _ in first.calls[:3]]
    interrupted = first.calls[3][0]

    again = FakeTraining(tmp_path / "run")
    summaries, best = search.run_optuna(cfg, tmp_path / "run", again)
    # the interrupted trial continues (from its checkpoint: state "resume"), then 2 new ones
    assert again.calls[0] == (interrupted, "resume")
    assert len(again.calls) == 3 and all(state == "new" for _, state in again.calls[1:])
    assert not {name for name, _ in again.calls} & set(done)
    assert [s.trial for s in summaries] == done + [name for name, _ in again.calls]

    # the same proposals as an uninterrupted study with the same seed
    straight = FakeTraining(tmp_path / "straight")
    search.run_optuna(cfg, tmp_path / "straight", straight)
    assert [name for name, _ in straight.calls] == [s.trial for s in summaries]

    # a finished study: resuming trains nothing
    idle = FakeTraining(tmp_path / "run")
    assert search.run_optuna(cfg, tmp_path / "run", idle)[0] == summaries and idle.calls == []


def test_optuna_run_through_the_runner_resumes_and_reports(tmp_path):
    """lj.experiment.run with the training stubbed out: the study is in the run directory,
    --resume trains nothing more, and results.csv lists the study's trials."""
    pytest.importorskip("optuna")
    fakes = []

    def fake_train_job(job, ctx, slot):  # the executor's seam: trains one job
        fake = FakeTraining(ctx.run_dir)
        fakes.append(fake)
        return [fake(t, ctx.state_of(t)) for t in job.trials]

    cfg = _cfg({**OPTUNA, "num_trials": 4})
    out = tmp_path / "run"
    result = lj.experiment.run(cfg, out_dir=out, train_job=fake_train_job)
    assert len(fakes) == 4 and len(result["trials"]) == 4
    assert result["best"]["value"] == min(t["median_final_loss"] for t in result["trials"])
    resumed = lj.experiment.run(cfg, out_dir=out, resume=True, train_job=fake_train_job)
    assert len(fakes) == 4 and resumed["trials"] == result["trials"]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == [t["trial"] for t in result["trials"]]
    assert "train.learning_rate" in rows[0] and "model.options.forget_bias" in rows[0]


def test_repeated_values_reuse_the_earlier_result():
    pytest.importorskip("optuna")
    cfg = _cfg({**OPTUNA, "num_trials": 2})
    replay = search._Replay(cfg)
    params = {"train.learning_rate": 0.00312345678, "model.options.forget_bias": 1.5}
    trial, first = replay.trial(0, params)
    assert first is None and trial.cfg.train.learning_rate == 0.003123  # rounded as drawn
    again, first = replay.trial(1, {**params, "train.learning_rate": 0.0031234})
    assert first == 0 and again is trial


# ---- end to end: a tiny random search trains ---------------------------------------------------


def test_random_search_end_to_end(tmp_path):
    cfg = _cfg({"method": "random", "num_trials": 2, "seed": 0,
                "train.learning_rate": {"loguniform": [1.0e-3, 1.0e-1]}})
    names = [t.name for t in expand(cfg)]
    result = lj.experiment.run(cfg, out_dir=tmp_path / "run")
    assert [t["trial"] for t in result["trials"]] == names and not result["failed"]
    for name in names:
        assert (tmp_path / "run" / name / SUMMARY_FILE).is_file()
    with open(tmp_path / "run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["trial"] for r in rows}) == sorted(names)
    assert {float(r["train.learning_rate"]) for r in rows} == {
        t.values["train.learning_rate"] for t in expand(cfg)}
    again = lj.experiment.run(cfg, out_dir=tmp_path / "run", resume=True)  # nothing to train
    assert [t["trial"] for t in again["trials"]] == names
