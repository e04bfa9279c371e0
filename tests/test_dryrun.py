"""`lstmjax run CONFIG --dry-run` and `lj.experiment.dry_run`: the trials a run would train, its
memory estimate and programs, checked as the run checks them -- with nothing written and
nothing compiled. No training: a resumed run directory is built by hand."""

from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import pytest
import yaml

from lstmjax import cli
from lstmjax.experiment import dry_run, load_config
from lstmjax.experiment.compile_cache import CompileMeter
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.frontier import max_probes, plan
from lstmjax.experiment.rundir import SUMMARY_FILE, write_config, write_summary
from lstmjax.experiment.schema import FrontierConfig
from lstmjax.experiment.summary import SeedResult, TrialSummary
from lstmjax.experiment.sweep import expand

ROOT = Path(__file__).resolve().parents[1]

GRID = """\
name: grid
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {learning_rate: 0.01, batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8,
        seeds: 2}
sweep: {model.cell: [rnn, gru], task.length: [4, 6, 8], train.learning_rate: [0.01, 0.1]}
output: {progress: none}
"""


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its modification time and content."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        out[str(path)] = (st.st_mtime_ns, path.read_bytes() if path.is_file() else None)
    return out


def test_dry_run_of_the_quickstart_prints_each_variants_first_probe_and_writes_nothing(
        tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the default output.dir (runs/) would be created here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LSTMJAX_COMPILE_CACHE", str(tmp_path / "cache"))
    config = ROOT / "configs" / "quickstart.yaml"
    with CompileMeter() as meter:
        rc = cli.main(["run", str(config), "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    raw = yaml.safe_load(config.read_text())
    start = raw["frontier"]["start"]
    for variant in raw["sweep"]["variant"]:
        assert f"variant-{variant['name']}__length-{start}" in out
    assert "first probe per variant (3)" in out
    assert "rule:" in out and "up to" in out and "memory:" in out
    assert "runs/quickstart (does not exist" in out
    # nothing written: no run directory, no compilation cache, no lock; nothing compiled
    assert list(work.iterdir()) == []
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "cache").exists()
    assert meter.requests == 0


def test_dry_run_with_out_and_set_counts_every_point_of_a_grid(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    sweep = yaml.safe_load(GRID)["sweep"]
    points = math.prod(len(v) for v in sweep.values())  # the oracle: product of the axes
    out_dir = tmp_path / "out"
    rc = cli.main(["run", str(path), "--dry-run", "--out", str(out_dir),
                   "--set", "train.steps=30"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"search: grid, {points} trial(s)" in out
    assert "steps: 30" in out  # the resolved config, --set applied
    for cell, length, lr in itertools.product(*sweep.values()):
        assert f"cell-{cell}__length-{length}__learning_rate-{lr}" in out
    assert not out_dir.exists()

    plan_ = dry_run(path, out_dir=out_dir)  # the Python API
    assert plan_.count == len(plan_.trials) == points and plan_.exact
    # the learning rates of a (cell, length) share one program; the lengths of a cell share
    # one initialiser
    n_lr = len(sweep["train.learning_rate"])
    assert plan_.programs["training"] == points // n_lr
    assert plan_.programs["initialisers"] == len(sweep["model.cell"])
    assert {row["cell"] for row in plan_.settings} == set(sweep["model.cell"])
    assert not out_dir.exists()


def test_dry_run_of_a_bad_config_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    out_dir = tmp_path / "out"
    rc = cli.main(["run", str(path), "--dry-run", "--out", str(out_dir),
                   "--set", "train.stepz=30"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "stepz" in err
    assert "Traceback" not in err and not out_dir.exists()


def _finished_summary(trial, solved: bool = True) -> TrialSummary:
    seeds = list(trial.cfg.train.seeds)
    per_seed = [SeedResult(seed=s, solved=solved, steps_to_solve=10 if solved else None,
                           final_loss=0.01 if solved else 0.2,
                           final_accuracy=None, diverged=False, diverged_step=None,
                           steps_trained=20) for s in seeds]
    return TrialSummary.build(
        per_seed, trial=trial.name, index=trial.index, values=trial.values,
        variant=trial.variant, task=trial.cfg.task.name, cell=trial.cfg.model.cell,
        length=trial.cfg.task.length, chance_loss=0.17, loss_type="mse",
        steps=trial.cfg.train.steps, seeds=seeds)


def test_dry_run_resume_lists_finished_resumed_and_new_trials_and_changes_no_file(
        tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    cfg = load_config(path)
    trials = expand(cfg)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir / "config.yaml", to_dict(cfg))
    finished, resumed = trials[0], trials[1]
    for t in (finished, resumed):
        (run_dir / t.name).mkdir()
        write_config(run_dir / t.name / "config.yaml", to_dict(t.cfg))
    write_summary(run_dir / finished.name / SUMMARY_FILE, _finished_summary(finished))
    before = _snapshot(run_dir)

    rc = cli.main(["run", str(path), "--dry-run", "--out", str(run_dir), "--resume"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  cell-")}
    assert lines[finished.name].endswith("[finished]")
    assert lines[resumed.name].endswith("[resume]")
    assert all(lines[t.name].endswith("[new]") for t in trials[2:])
    assert f"resume: 1 finished, 1 resume, {len(trials) - 2} new" in out
    assert "exists; --resume continues it" in out
    assert _snapshot(run_dir) == before  # no file changed, none added (no lock either)

    # without --resume the run would refuse the directory: so does the dry run, one line
    rc = cli.main(["run", str(path), "--dry-run", "--out", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and err.count("\n") == 1
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("settings", [
    {"start": 5, "max": 160, "factor": 2, "resolution": 0.25},
    {"start": 5, "max": 2000, "factor": 2, "resolution": 0.1},
    {"start": 3, "max": 50, "factor": 3, "resolution": 0.05},
    {"start": 1, "max": 7, "factor": 1.5, "resolution": 0.5},
])
def test_frontier_max_probes_is_the_most_probes_any_outcomes_make(settings):
    fc = FrontierConfig(**settings)

    def most(known: dict) -> int:  # every outcome of every probe plan() asks for
        gap, _ = plan(fc, known)
        if gap is None:
            return len(known)
        return max(most({**known, gap: 1.0}), most({**known, gap: 0.0}))

    assert max_probes(fc) == most({})


def test_dry_run_of_an_optuna_study_shows_the_proposals_the_study_makes(tmp_path):
    pytest.importorskip("optuna")
    from lstmjax.experiment.search import OptunaSearch
    from lstmjax.experiment.search.optuna import startup_trials

    config = ROOT / "configs" / "search_optuna.yaml"
    out_dir = tmp_path / "dry"
    shown = dry_run(config, out_dir=out_dir)
    assert not out_dir.exists()
    cfg = load_config(config)
    assert shown.search == "optuna" and shown.count == cfg.search.num_trials
    # the oracle: a real study in a scratch directory, each proposal told as failed (which
    # leaves the start-up's draws as they are)
    study = OptunaSearch(cfg, tmp_path / "study", expand(cfg))
    (tmp_path / "study").mkdir()
    asked = []
    for _ in range(startup_trials(cfg.search)):
        [trial] = study.ask()
        asked.append(trial.name)
        study.tell(trial, None)
    assert [t.name for t in shown.trials] == asked


def _fake_training(j, ctx, slot):
    """Stands in for a job's training (nothing compiles): writes each trial's files as
    training would; a probe solves gaps up to 40."""
    out = []
    for t in j.trials:
        tdir = ctx.dir_of(t)
        tdir.mkdir(parents=True, exist_ok=True)
        write_config(tdir / "config.yaml", to_dict(t.cfg))
        summary = _finished_summary(t, solved=t.cfg.task.length <= 40)
        write_summary(tdir / SUMMARY_FILE, summary)
        out.append(summary)
    return out


def test_dry_run_resume_of_a_frontier_lists_its_probes_and_the_next_one(
        tmp_path, monkeypatch, capsys):
    from lstmjax.experiment import job

    monkeypatch.setattr(job, "train_job", _fake_training)
    config = str(ROOT / "configs" / "quickstart.yaml")
    run_dir = tmp_path / "run"
    assert cli.main(["run", config, "--out", str(run_dir), "--progress", "none",
                     "--compile-cache", "off", "--set", "output.plots=false"]) == 0
    # lstm's last probe never ran; gru's was interrupted (no summary yet)
    shutil.rmtree(run_dir / "variant-lstm__length-57")
    (run_dir / "variant-gru__length-57" / SUMMARY_FILE).unlink()
    capsys.readouterr()
    before = _snapshot(run_dir)

    assert cli.main(["run", config, "--out", str(run_dir), "--resume", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  variant-")}
    assert lines["variant-lstm__length-57"].endswith("[new]")
    assert lines["variant-gru__length-57"].endswith("[resume]")
    assert lines["variant-rnn__length-57"].endswith("[finished]")
    assert "variant-lstm__length-48" not in lines  # decided only once 57 is known
    assert _snapshot(run_dir) == before


def test_dry_run_counts_the_programs_a_frontier_s_gaps_share(capsys):
    """The quickstart (gaps 5 to 160): up to 8 probes per variant, each its own training
    program; with ``shared_program`` one per variant and buffer that can hold a gap >= 5
    (buffers 160, 40, 10, 3, 1 at ratio 4: three). Its diagnostics programs are shared either
    way: one per variant."""
    config = str(ROOT / "configs" / "quickstart.yaml")
    counts = {}
    for shared in ("false", "true"):
        assert cli.main(["run", config, "--dry-run", "--set",
                         f"frontier.shared_program={shared}"]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines()
                    if ln.startswith("programs to compile:"))
        counts[shared] = (int(line.split("up to ")[1].split()[0]),
                          int(line.split(" diagnostics")[0].rsplit(" ", 1)[1]))
    raw = yaml.safe_load(Path(config).read_text())
    variants = len(raw["sweep"]["variant"])
    assert (raw["frontier"]["start"], raw["frontier"]["max"]) == (5, 160)
    assert counts == {"false": (8 * variants, variants), "true": (3 * variants, variants)}
