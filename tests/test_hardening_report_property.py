"""Property: ``lstmjax report`` and ``lstmjax run --resume`` on partially finished and damaged run
directories (a grid and an optuna search) never traceback, never write fewer finished trials
into ``results.csv`` than there were intact ``summary.json`` files, and never lose one.

Each example copies a finished run (made once per module, training stubbed out: the trials'
files are written as the runner writes them) and damages it: per trial, finished, half-written
(metrics, no summary), summary truncated or garbled, trial config deleted, or the trial
directory deleted; per run, ``optuna.db`` kept, deleted, garbage, or another study's, and
sometimes the run's own config deleted. The oracle is which trials the example left intact."""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lstmjax as lj
from lstmjax import cli
from lstmjax.experiment import job as job_module
from lstmjax.experiment.rundir import SUMMARY_FILE, read_finished, write_config, write_summary
from lstmjax.experiment.summary import SeedResult, TrialSummary

optuna = pytest.importorskip("optuna")

BASE = {
    "name": "p",
    "task": {"name": "adding", "length": 5},
    "model": {"cell": "lstm", "hidden_size": 4},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8},
    "output": {"progress": "none", "plots": False},
}
SWEEPS = {
    "grid": {"model.cell": ["lstm", "gru"], "task.length": [4, 5]},
    "optuna": {"method": "optuna", "num_trials": 4, "seed": 0, "objective": "median_final_loss",
               "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-1]},
               "model.options.forget_bias": {"uniform": [0.0, 3.0]}},
}  # fmt: skip
TRIALS = 4
STATES = ("finished", "half", "truncated", "garbled", "no-config", "gone")
INTACT = ("finished", "no-config")  # a summary.json that reads back: the trial has finished
DB_STATES = ("kept", "deleted", "garbage", "foreign")
GARBLED = (b"", b"\xff\xfe\x00junk", b"[]", b"null", b'{"trial": 1}', b'{"per_seed": "x"}')


class FakeTrain:
    """Stands in for the executor's ``train_job`` seam, as training behaves: a trial planned
    other than ``new`` whose summary reads back is returned as it is; any other is 'trained'
    (its files written). Records what it was asked to train."""

    def __init__(self):
        self.trained: list[str] = []

    def __call__(self, job, ctx, slot):  # the executor's seam: train one job
        out = []
        run_dir = ctx.run_dir
        for t in job.trials:
            tdir = Path(run_dir) / t.name
            if ctx.state_of(t) != "new" and (tdir / SUMMARY_FILE).exists():
                try:
                    out.append(read_finished(tdir))
                    continue
                except lj.experiment.rundir.DamagedFile:
                    pass
            self.trained.append(t.name)
            tdir.mkdir(parents=True, exist_ok=True)
            write_config(tdir / "config.yaml", lj.experiment.config.to_dict(t.cfg))
            (tdir / "metrics.jsonl").write_text("")
            seed = SeedResult(seed=0, solved=False, steps_to_solve=None,
                              final_loss=0.01 * (t.index + 1), final_accuracy=None,
                              diverged=False, diverged_step=None, steps_trained=20)
            summary = TrialSummary.build(
                [seed], trial=t.name, index=t.index, values=t.values, variant=t.variant,
                task="adding", cell=t.cfg.model.cell, length=t.cfg.task.length,
                chance_loss=1 / 6, loss_type="mse", steps=20, seeds=[0])
            write_summary(tdir / SUMMARY_FILE, summary)
            out.append(summary)
        return out


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A finished grid run and a finished optuna search (4 trials each), and another study's
    optuna.db (``foreign.db``)."""
    root = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job_module, "train_job", FakeTrain())
        for kind, sweep in SWEEPS.items():
            (root / f"{kind}.yaml").write_text(yaml.safe_dump({**BASE, "sweep": sweep}))
            assert cli.main(["run", str(root / f"{kind}.yaml"), "--out", str(root / kind)]) == 0
        other = {**SWEEPS["optuna"], "num_trials": 2, "model.hidden_size": {"int": [4, 8]}}
        del other["train.learning_rate"]
        (root / "other.yaml").write_text(yaml.safe_dump({**BASE, "name": "o", "sweep": other}))
        assert cli.main(["run", str(root / "other.yaml"), "--out", str(root / "other")]) == 0
    shutil.copy(root / "other" / "optuna.db", root / "foreign.db")
    return root


def _damage(made: Path, root: Path, kind: str, states: list[str], db: str, no_run_config: bool,
            cut: int) -> tuple[Path, Path, set[str]]:
    """A damaged copy of run ``kind``: (its config file, its directory, the intact trials)."""
    run = root / kind
    shutil.copytree(made / kind, run)
    config = root / f"{kind}.yaml"
    shutil.copy(made / f"{kind}.yaml", config)
    trials = sorted(p.parent.name for p in run.glob(f"*/{SUMMARY_FILE}"))
    assert len(trials) == TRIALS
    intact = set()
    for name, state in zip(trials, states, strict=True):
        tdir = run / name
        summary = tdir / SUMMARY_FILE
        if state in INTACT:
            intact.add(name)
        if state == "half":
            summary.unlink()
            (tdir / "metrics.jsonl").write_text('{"step": 10, "seed": 0, "loss": 0.5}\n')
        elif state == "truncated":
            text = summary.read_bytes()
            summary.write_bytes(text[: cut % len(text)])
        elif state == "garbled":
            summary.write_bytes(GARBLED[cut % len(GARBLED)])
        elif state == "no-config":
            (tdir / "config.yaml").unlink()
        elif state == "gone":
            shutil.rmtree(tdir)
    if kind == "optuna" and db != "kept":
        (run / "optuna.db").unlink()
        if db == "garbage":
            (run / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 200)
        elif db == "foreign":
            shutil.copy(made / "foreign.db", run / "optuna.db")
    if no_run_config:
        (run / "config.yaml").unlink()
    return config, run, intact


def _rows(run: Path) -> set[str]:
    with open(run / "results.csv") as f:
        return {r["trial"] for r in csv.DictReader(f)}


def _lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if not ln.startswith("warning: ")]


def _refused(rc: int, err: str) -> None:
    lines = _lines(err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err


_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,  # the same cases in CI
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
_RUNS = dict(
    kind=st.sampled_from(sorted(SWEEPS)),
    states=st.lists(st.sampled_from(STATES), min_size=TRIALS, max_size=TRIALS),
    db=st.sampled_from(DB_STATES),
    no_run_config=st.integers(min_value=0, max_value=7).map(lambda i: i == 7),  # now and then
    cut=st.integers(min_value=0, max_value=10_000),
)


@_SETTINGS
@given(**_RUNS)
@example(kind="optuna", states=["finished", "truncated", "half", "no-config"], db="deleted",
         no_run_config=False, cut=7)
def test_report_of_a_damaged_run_keeps_every_finished_trials_rows(made, capsys, kind, states,
                                                                  db, no_run_config, cut):
    with tempfile.TemporaryDirectory() as tmp:
        _, run, intact = _damage(made, Path(tmp), kind, states, db, no_run_config, cut)
        before = (run / "results.csv").read_bytes()
        capsys.readouterr()
        rc = cli.main(["report", str(run), "--no-plots"])
        err = capsys.readouterr().err
        if no_run_config:  # not a run directory any more: refused, results.csv untouched
            _refused(rc, err)
            assert (run / "results.csv").read_bytes() == before
            return
        assert rc == 0 and _lines(err) == [], err
        # exactly the intact trials have rows (never fewer: the oracle is the damage done)
        assert _rows(run) == intact


# the cases the issue reported, whatever hypothesis draws: a lost study with finished and damaged
# trials (recreated), and a kept study whose told trials lost their summaries (trained on)
@_SETTINGS
@given(**_RUNS)
@example(kind="optuna", states=["finished", "truncated", "half", "no-config"], db="deleted",
         no_run_config=False, cut=7)
@example(kind="optuna", states=["gone", "garbled", "half", "finished"], db="kept",
         no_run_config=False, cut=1)
def test_resume_of_a_damaged_run_loses_no_finished_trial(made, capsys, monkeypatch, kind, states,
                                                         db, no_run_config, cut):
    fake = FakeTrain()
    monkeypatch.setattr(job_module, "train_job", fake)
    with tempfile.TemporaryDirectory() as tmp:
        config, run, intact = _damage(made, Path(tmp), kind, states, db, no_run_config, cut)
        kept = {n: (run / n / SUMMARY_FILE).read_bytes() for n in intact}
        capsys.readouterr()
        rc = cli.main(["run", str(config), "--out", str(run), "--resume", "--progress", "none"])
        err = capsys.readouterr().err
        refused = no_run_config or (kind == "optuna" and db in ("garbage", "foreign"))
        if refused:  # not a run directory, or another study's (or no study's) optuna.db
            _refused(rc, err)
            assert "optuna.db" in err or no_run_config
            assert fake.trained == []
        else:
            assert rc == 0 and _lines(err) == [], err
            assert not set(fake.trained) & intact  # a finished trial is never trained again
        for name, text in kept.items():  # nor lost
            assert (run / name / SUMMARY_FILE).read_bytes() == text
        if not refused:
            rows = _rows(run)
            assert intact <= rows
            # resumed to the end: every trial has finished (an optuna search: num_trials)
            assert len(rows) == TRIALS
