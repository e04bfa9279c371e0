"""Hardening of an optuna search's run directory (issue 23): a deleted or foreign ``optuna.db``
never costs the finished trials' rows in ``results.csv``, ``--resume`` refuses another study's
``optuna.db`` in one line without writing anything, and recreates a lost study from the
finished trials' summaries. Training is stubbed out (the trials' files are written as the
runner writes them), so no program is compiled."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

import lstmjax as lj
from lstmjax import cli
from lstmjax.experiment import job as job_module
from lstmjax.experiment import search
from lstmjax.experiment.rundir import SUMMARY_FILE, write_config, write_summary
from lstmjax.experiment.summary import SeedResult, TrialSummary

optuna = pytest.importorskip("optuna")

BASE = {
    "name": "s",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "lstm", "hidden_size": 4},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8},
    "output": {"progress": "none", "plots": False},
}
SWEEP = {
    "method": "optuna", "num_trials": 3, "seed": 0, "objective": "median_final_loss",
    "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.options.forget_bias": {"uniform": [0.0, 3.0]},
}  # fmt: skip
OTHER = {  # another study: no learning rate, a hidden size instead
    "method": "optuna", "num_trials": 2, "seed": 1, "objective": "median_final_loss",
    "model.hidden_size": {"int": [4, 8]},
    "model.options.forget_bias": {"uniform": [0.0, 3.0]},
}  # fmt: skip


def _loss(cfg) -> float:
    return (cfg.train.learning_rate - 0.003) ** 2 + (cfg.model.options["forget_bias"] - 1) ** 2


class FakeTrain:
    """Stands in for the executor's ``train_job`` seam: writes each trial's files as training
    does."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __call__(self, job, ctx, slot):  # the executor's seam: train one job
        out = []
        run_dir = ctx.run_dir
        for t in job.trials:
            self.calls.append((t.name, ctx.state_of(t)))
            tdir = Path(run_dir) / t.name
            tdir.mkdir(parents=True, exist_ok=True)
            write_config(tdir / "config.yaml", lj.experiment.config.to_dict(t.cfg))
            (tdir / "metrics.jsonl").write_text("")
            seed = SeedResult(seed=0, solved=False, steps_to_solve=None, final_loss=_loss(t.cfg),
                              final_accuracy=None, diverged=False, diverged_step=None,
                              steps_trained=20)
            summary = TrialSummary.build(
                [seed], trial=t.name, index=t.index, values=t.values, variant=t.variant,
                task="adding", cell="lstm", length=5, chance_loss=1 / 6, loss_type="mse",
                steps=20, seeds=[0])
            write_summary(tdir / SUMMARY_FILE, summary)
            out.append(summary)
        return out


@pytest.fixture
def fake(monkeypatch):
    train = FakeTrain()
    monkeypatch.setattr(job_module, "train_job", train)
    return train


def _config(tmp_path: Path, name: str, sweep: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "name": name, "sweep": sweep}))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Two finished searches, trained once for the module: ``s`` (3 trials) and ``other``
    (another config and search space, 2 trials)."""
    root = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job_module, "train_job", FakeTrain())
        for name, sweep in (("s", SWEEP), ("other", OTHER)):
            config = _config(root, name, sweep)
            assert cli.main(["run", str(config), "--out", str(root / name),
                             "--progress", "none"]) == 0
    return root


def _run(made: Path, tmp_path: Path, name: str = "s") -> tuple[Path, Path]:
    """A copy of the finished search ``name``: (its config file, its run directory)."""
    shutil.copy(made / f"{name}.yaml", tmp_path / f"{name}.yaml")
    shutil.copytree(made / name, tmp_path / name)
    return tmp_path / f"{name}.yaml", tmp_path / name


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def _finished(run_dir: Path) -> dict[str, dict]:
    """The oracle: every trial directory's summary.json, read as plain JSON."""
    return {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob(f"*/{SUMMARY_FILE}")}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _old_foreign_study(path: Path) -> None:
    """An optuna.db as lstmjax wrote it before it recorded the study's config: study
    ``lstmjax``, trials with another search space (the KeyError 'train.learning_rate' case)."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.absolute()}")
    study = optuna.create_study(storage=storage, study_name="lstmjax", direction="minimize")
    dists = {"model.hidden_size": optuna.distributions.IntDistribution(4, 8),
             "model.options.forget_bias": optuna.distributions.FloatDistribution(0.0, 3.0)}
    for hidden, bias in ((5, 1.0), (6, 2.0)):
        study.add_trial(optuna.trial.create_trial(
            params={"model.hidden_size": hidden, "model.options.forget_bias": bias},
            distributions=dists, value=bias))
    storage.engine.dispose()


def _other_name_study(path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.absolute()}")
    optuna.create_study(storage=storage, study_name="someone-elses", direction="minimize")
    storage.engine.dispose()


# ---- 1. report: the rows come from the summaries, whatever happened to optuna.db ----------------


def _check_report_keeps_rows(out: Path, capsys, expected_warning: str) -> None:
    finished = _finished(out)
    assert len(finished) == 3
    capsys.readouterr()
    assert cli.main(["report", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warnings = [ln for ln in err.splitlines() if "optuna.db" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert expected_warning in warnings[0]
    assert "summaries" in warnings[0]
    rows = _rows(out)
    assert sorted(r["trial"] for r in rows) == sorted(finished)
    for r in rows:  # each row is its trial's summary (the oracle: summary.json as JSON)
        s = finished[r["trial"]]
        assert float(r["final_loss"]) == pytest.approx(s["per_seed"][0]["final_loss"])
        assert float(r["train.learning_rate"]) == s["values"]["train.learning_rate"]


def test_report_after_optuna_db_deleted_keeps_every_finished_trials_rows(made, tmp_path, fake,
                                                                         capsys):
    _, out = _run(made, tmp_path)
    (out / search.STUDY_FILE).unlink()
    _check_report_keeps_rows(out, capsys, "missing")


def test_report_with_another_studys_optuna_db_keeps_every_finished_trials_rows(made, tmp_path,
                                                                             fake, capsys):
    _, out = _run(made, tmp_path)
    _, other = _run(made, tmp_path, "other")
    shutil.copy(other / search.STUDY_FILE, out / search.STUDY_FILE)
    _check_report_keeps_rows(out, capsys, "another config")


def test_report_with_an_old_foreign_optuna_db_keeps_every_finished_trials_rows(made, tmp_path,
                                                                             fake, capsys):
    _, out = _run(made, tmp_path)
    (out / search.STUDY_FILE).unlink()
    _old_foreign_study(out / search.STUDY_FILE)
    _check_report_keeps_rows(out, capsys, "model.hidden_size")


# ---- 2. resume: another study is refused in one line; a lost one is recreated -------------------


@pytest.mark.parametrize("foreign", ["another config", "old lstmjax", "another name"])
def test_resume_with_another_studys_optuna_db_is_one_line_and_changes_nothing(
        made, tmp_path, fake, capsys, foreign):
    config, out = _run(made, tmp_path)
    db = out / search.STUDY_FILE
    db.unlink()
    if foreign == "another config":
        _, other = _run(made, tmp_path, "other")
        shutil.copy(other / search.STUDY_FILE, db)
    elif foreign == "old lstmjax":
        _old_foreign_study(db)
    else:
        _other_name_study(db)
    calls = len(fake.calls)
    before = _tree(out)
    capsys.readouterr()
    rc = cli.main(["run", str(config), "--out", str(out), "--resume", "--progress", "none"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {db.absolute()}: "), err
    expected = {"another config": "name: stored 'other', now 's'",
                "old lstmjax": "model.hidden_size",
                "another name": "'someone-elses'"}[foreign]
    assert expected in lines[0]
    assert "move the file away" in lines[0] and "--out" in lines[0]
    assert _tree(out) == before and len(fake.calls) == calls  # nothing written or trained


def test_resume_after_optuna_db_deleted_recreates_the_study_from_finished_trials(made, tmp_path,
                                                                               fake, capsys):
    config, out = _run(made, tmp_path)
    finished = _finished(out)
    (out / search.STUDY_FILE).unlink()
    calls = len(fake.calls)
    capsys.readouterr()
    rc = cli.main(["run", str(config), "--out", str(out), "--resume", "--progress", "none"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    warnings = [ln for ln in err.splitlines() if "optuna.db" in ln]
    assert len(warnings) == 1 and "recreated" in warnings[0] and "3 finished" in warnings[0]
    assert len(fake.calls) == calls  # the 3 trials are told back, none is trained or re-read
    assert _finished(out) == finished  # nothing lost
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / search.STUDY_FILE).absolute()}")
    study = optuna.load_study(storage=storage, study_name=search.STUDY_NAME)
    told = sorted((t.params["train.learning_rate"], t.params["model.options.forget_bias"],
                   t.value) for t in study.get_trials())
    storage.engine.dispose()
    oracle = sorted((s["values"]["train.learning_rate"], s["values"]["model.options.forget_bias"],
                     s["per_seed"][0]["final_loss"]) for s in finished.values())
    assert [x for t in told for x in t] == pytest.approx([x for t in oracle for x in t])
    assert sorted(r["trial"] for r in _rows(out)) == sorted(finished)


def test_resume_trains_on_a_told_trial_whose_summary_is_damaged(made, tmp_path, fake, capsys):
    """The study was told the trial's value, but its summary.json is damaged: --resume trains
    it on from its checkpoint (it used to stay out of the run's results for good)."""
    config, out = _run(made, tmp_path)
    finished = _finished(out)
    damaged = sorted(finished)[1]
    (out / damaged / SUMMARY_FILE).write_text('{"trial": ')
    capsys.readouterr()
    rc = cli.main(["run", str(config), "--out", str(out), "--resume", "--progress", "none"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert fake.calls == [(damaged, "resume")]  # only it, from its checkpoint
    assert _finished(out) == finished
    assert sorted(r["trial"] for r in _rows(out)) == sorted(finished)
