"""Hardening: a run directory is never damaged, never escaped, never misdescribed; every user
error is one line. One test per case of the hardening issue (numbers in the test names), each
written to reproduce the problem first. Tiny runs: rnn, hidden 8, gap 4, 20 steps."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _reporters import InterruptAfter

from lstmjax import cli
from lstmjax.experiment import ConfigError, RunError, load_config, read_metrics, run

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 2}
output: {checkpoint_every: 10, progress: none, plots: false}
"""
SWEEP = "sweep: {task.length: [4, 6]}\n"


def _write(tmp: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: (kind, size, mtime_ns, mode, content hash) -- to prove that
    nothing changed."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        regular = p.is_file() and not p.is_symlink()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if regular else ""
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns,
                                          stat.S_IMODE(st.st_mode), digest)
    return out


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def _one_line_error(rc: int, err: str, expected: str) -> None:
    lines = [ln for ln in err.splitlines() if not ln.startswith("warning: ")]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """A finished 2-trial run (gaps 4 and 6)."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = load_config(_write(tmp, TINY + SWEEP, "sw.yaml"))
    run(cfg, out_dir=tmp / "ref")
    return tmp / "ref", tmp / "sw.yaml"


# ---- 1. --resume into a directory that is not a run directory ------------------------------------


def test_01_resume_into_a_non_run_directory_changes_nothing(tmp_path, capsys):
    d = tmp_path / "d"
    (d / "default" / "checkpoints").mkdir(parents=True)
    (d / "plots").mkdir()
    (d / "report.md").write_text("n")
    (d / ".draft.tmp").write_text("n")
    (d / "default" / "checkpoints" / "weights.bin").write_text("w")
    before = _snapshot(d)
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", str(d), "--resume")
    _one_line_error(rc, err, f"{d}: not a run directory (no config.yaml); nothing was changed")
    assert _snapshot(d) == before


def test_01_only_the_runs_own_temporaries_and_checkpoints_are_deleted(ref, tmp_path):
    from lstmjax._io import remove_stale_temporaries
    from lstmjax.experiment.rundir import Checkpointer

    d = tmp_path / "t"
    d.mkdir()
    for name in (".summary.json.x1y2.tmp", ".notes.tmp", ".draft.tmp", ".summary.json.tmp"):
        (d / name).write_text("x")
    remove_stale_temporaries(d, ["summary.json"])
    assert sorted(p.name for p in d.iterdir()) == [".draft.tmp", ".notes.tmp",
                                                   ".summary.json.tmp"]
    ck = d / "checkpoints"
    (ck / "10").mkdir(parents=True)
    (ck / "weights.bin").write_text("w")
    Checkpointer(ck).clear()
    assert [p.name for p in ck.iterdir()] == ["weights.bin"]


# ---- 2. the run's record never describes another experiment --------------------------------------


def test_02_missing_run_config_is_refused_before_writing(ref, tmp_path, capsys):
    run_dir, sw = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    (r / "config.yaml").unlink()
    before = _snapshot(r)
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume",
                   "--set", "train.learning_rate=0.5")
    _one_line_error(rc, err, "not a run directory (no config.yaml)")
    assert _snapshot(r) == before


def test_02_every_trial_config_is_checked_before_writing(ref, tmp_path, capsys):
    run_dir, sw = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    # a trial made with another learning rate (its run-level config was edited to match)
    trial = r / "length-6" / "config.yaml"
    trial.write_text(trial.read_text().replace("learning_rate: 0.01", "learning_rate: 0.5"))
    (r / "length-6" / "summary.json").unlink()  # unfinished
    before = _snapshot(r)
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume")
    _one_line_error(rc, err, "length-6/config.yaml: the run was made with a different config "
                             "(train.learning_rate: stored 0.5, now 0.01)")
    assert _snapshot(r) == before
    # and a different request is refused with the run-level config untouched
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume",
                   "--set", "train.learning_rate=0.5")
    _one_line_error(rc, err, "train.learning_rate: stored 0.01, now 0.5")
    assert _snapshot(r) == before


# ---- 3. symbolic links never lead writes outside the run directory -------------------------------


def test_03_symlinked_plots_are_refused_by_report(ref, tmp_path, capsys):
    run_dir, _ = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".keep.tmp").write_text("mine")
    shutil.rmtree(r / "plots", ignore_errors=True)
    (r / "plots").symlink_to(elsewhere)
    rc, err = _cli(capsys, "report", str(r))
    _one_line_error(rc, err, "plots: is a symbolic link inside the run directory")
    assert [p.name for p in elsewhere.iterdir()] == [".keep.tmp"]


def test_03_symlinked_trial_directory_is_refused_by_resume(ref, tmp_path, capsys):
    run_dir, sw = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(r / "length-6", elsewhere)
    (r / "length-6").symlink_to(elsewhere)
    (elsewhere / "summary.json").unlink()
    before = _snapshot(elsewhere)
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume")
    _one_line_error(rc, err, "length-6: is a symbolic link inside the run directory")
    assert _snapshot(elsewhere) == before


# ---- 4. one process per run directory ------------------------------------------------------------


def test_04_a_live_lock_refuses_a_second_run(tmp_path, capsys):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-12-01T10:00"}
        (out / ".lstmjax.lock").write_text(json.dumps(lock))
        rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", str(out), "--resume")
        _one_line_error(rc, err, f"{out} is in use by pid {holder.pid} on {lock['host']} "
                                 "(started 2026-12-01T10:00); wait or pass --force-unlock")
        assert [p.name for p in out.iterdir()] == [".lstmjax.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_04_a_stale_lock_is_taken_over_and_released(tmp_path, capsys):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lstmjax.lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", str(out), "--resume")
    assert rc == 0, err
    assert f"taking over the lock of pid {dead.pid}" in err
    assert not (out / ".lstmjax.lock").exists()
    assert (out / "default" / "summary.json").exists()


@pytest.mark.slow
def test_04_force_unlock_takes_over_a_lock_from_another_host(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lstmjax.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    path = str(_write(tmp_path, TINY))
    rc, err = _cli(capsys, "run", path, "--out", str(out), "--resume")
    _one_line_error(rc, err, "is in use by pid 1 on elsewhere")
    rc, err = _cli(capsys, "run", path, "--out", str(out), "--resume", "--force-unlock")
    assert rc == 0 and "forced" in err, err


# ---- 5. a corrupted checkpoint never loads silently ----------------------------------------------


@pytest.fixture(scope="module")
def long_ref(tmp_path_factory):
    """The uninterrupted 40-step run that interrupted ones must reproduce."""
    tmp = tmp_path_factory.mktemp("long")
    text = TINY.replace("steps: 20", "steps: 40")
    cfg = load_config(_write(tmp, text))
    run(cfg, out_dir=tmp / "ref", report=False)
    return text, (tmp / "ref" / "default" / "metrics.jsonl").read_text()


def _corrupt_newest_checkpoint(trial: Path) -> Path:
    steps = sorted(int(p.name) for p in (trial / "checkpoints").iterdir() if p.name.isdigit())
    newest = trial / "checkpoints" / str(steps[-1])
    data = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    blob = bytearray(data.read_bytes())
    for i in range(0, len(blob), 7):
        blob[i] ^= 0x5A
    data.write_bytes(bytes(blob))
    return data


@pytest.mark.parametrize("keep", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_05_corrupt_checkpoint_falls_back_or_restarts_with_a_warning(long_ref, tmp_path, keep,
                                                                     capsys):
    text, expected = long_ref
    cfg = load_config(_write(tmp_path, text), [f"output.keep_checkpoints={keep}"])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=out, progress=InterruptAfter(4), report=False)  # checkpoints at 10..30
    bad = _corrupt_newest_checkpoint(out / "default")
    capsys.readouterr()
    run(cfg, out_dir=out, resume=True, report=False)
    err = capsys.readouterr().err
    assert "checkpoint damaged" in err and bad.name in err, err
    if keep == 1:
        assert "no valid checkpoint; the trial is trained again from the start" in err
    summary = json.loads((out / "default" / "summary.json").read_text())
    assert summary["resumed_from_step"] == (20 if keep == 2 else None)
    assert (out / "default" / "metrics.jsonl").read_text() == expected


# ---- 6. float64 is used when it is recorded ------------------------------------------------------


def test_06_float64_without_x64_is_refused_and_mixed_sweeps_too(tmp_path):
    import jax

    assert not jax.config.jax_enable_x64
    cfg = load_config(_write(tmp_path, TINY), ["model.options.dtype=float64"])
    with pytest.raises(RunError, match="float64 needs 64-bit JAX"):
        run(cfg, out_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    mixed = load_config(_write(tmp_path, TINY + "sweep: {model.options.dtype: [float32, float64]}"))
    with pytest.raises(RunError, match="mixes float64 with float32"):
        run(mixed, out_dir=tmp_path / "b")


@pytest.mark.slow
def test_06_cli_runs_a_float64_config_in_float64(tmp_path):
    path = _write(tmp_path, TINY)
    script = textwrap.dedent(f"""
        import json, sys
        from lstmjax import cli
        rc = cli.main(["run", {str(path)!r}, "--out", {str(tmp_path / "f64")!r},
                       "--set", "model.options.dtype=float64"])
        import jax, jax.numpy as jnp
        from lstmjax.experiment import load_config
        from lstmjax.train import make_trainer
        cfg = load_config({str(path)!r}, ["model.options.dtype=float64"])
        state = make_trainer(cfg).init(jax.random.PRNGKey(0))
        print(json.dumps([rc, jax.config.jax_enable_x64,
                          str(state.params["rnn"][0][0]["W_h"].dtype)]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert json.loads(proc.stdout.splitlines()[-1]) == [0, True, "float64"], proc.stderr
    f64 = [m["loss"] for m in read_metrics(tmp_path / "f64" / "default" / "metrics.jsonl")]
    cfg = load_config(path)
    run(cfg, out_dir=tmp_path / "f32", report=False)
    f32 = [m["loss"] for m in read_metrics(tmp_path / "f32" / "default" / "metrics.jsonl")]
    # another precision (and, in 64-bit mode, other random bits): not the float32 numbers
    assert len(f64) == len(f32) and f64 != f32
    assert all(0 < v < 1 for v in f64)


# ---- 7. seeds are integers in [0, 2^32) ----------------------------------------------------------


@pytest.mark.parametrize("seeds", ["[0, 4294967296]", "[100000000000000000000]", "[-1]"])
def test_07_seeds_must_fit_a_uint32_key(tmp_path, capsys, seeds):
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "r"),
                   "--set", f"train.seeds={seeds}")
    _one_line_error(rc, err, "train.seeds: seeds must be integers in [0, 2^32)")
    assert not (tmp_path / "r").exists()


# ---- 10. resource exhaustion through the config file ---------------------------------------------


def test_10_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = "\n".join(["task:", "  name: adding", "  bomb:"] +
                     ["    " + ln for ln in lines]) + "\n"
    import time

    t = time.monotonic()
    rc, err = _cli(capsys, "run", str(_write(tmp_path, bomb)), "--out", str(tmp_path / "r"))
    assert time.monotonic() - t < 10
    _one_line_error(rc, err, "the document expands to more than 100000 values")


def test_10_non_regular_and_huge_files_are_refused(tmp_path, capsys):
    rc, err = _cli(capsys, "run", "/dev/zero", "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, "/dev/zero: not a regular file")
    big = tmp_path / "big.yaml"
    big.write_text(TINY + "description: " + "x" * (2 << 20) + "\n")
    rc, err = _cli(capsys, "run", str(big), "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, "is larger than the 1048576 byte limit")
    assert not (tmp_path / "r").exists()


# ---- 11. sizes that cannot fit -------------------------------------------------------------------


@pytest.mark.parametrize("override,expected", [
    ("model.hidden_size=1000000000000", "model.hidden_size: expected an integer <= 1048576"),
    ("model.hidden_size=1e12", "model.hidden_size: expected an integer, got 1000000000000.0"),
    ("train.steps=1000000000000000000000000000000", "train.steps: expected an integer <= "),
    ("train.batch_size=1e9", "train.batch_size: expected an integer, got 1000000000.0"),
    ("train.batch_size=1000000000", "train.batch_size: expected an integer <= 1048576"),
    ("task.length=1000000000", "task.length: expected an integer <= 10000000"),
    ("train.seeds=100000", "train.seeds: 100000 seeds is more than the limit of 4096"),
    ("model.hidden_size=100000", "of memory (estimate; batch_size 4, length 4, "
                                 "hidden_size 100000, 2 seeds) but this device has"),
])
def test_11_sizes_that_cannot_fit_are_refused_before_writing(tmp_path, capsys, override,
                                                             expected):
    out = tmp_path / "r"
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", str(out),
                   "--set", override)
    _one_line_error(rc, err, expected)
    assert not out.exists()


def test_11_the_memory_estimate_is_of_the_right_order(tmp_path):
    """The estimate against a hand count for a gru trial at gap 200 (3 seeds, hidden 32)."""
    from lstmjax.experiment import expand
    from lstmjax.experiment.resources import estimate_bytes

    grid = ("name: g\ntask: {name: adding, length: 100}\nmodel: {cell: lstm, hidden_size: 32}\n"
            "train: {seeds: 3}\nsweep: {model.cell: [rnn, gru], task.length: [25, 200]}\n")
    trial = expand(load_config(_write(tmp_path, grid)))[-1]  # gru, gap 200
    T, H, P, B_e, S = 200, 32, 3 * 32, 256, 3
    # the evaluation batch dominates the training batch (2 * 32); + inputs (2) and outputs (1)
    act = B_e * T * (P + 3 * H + 2 + 1)
    n_params = 2 * P + H * P + P + H + 1
    assert estimate_bytes(trial.cfg) == S * (act + 4 * n_params) * 4


# ---- 12. impossible output directories -----------------------------------------------------------


@pytest.mark.parametrize("target", ["file", "/proc/lstmjax-test", "/sys/lstmjax/x", "/dev/null",
                                    "file/below"])
def test_12_bad_output_directories_are_one_line(tmp_path, capsys, target):
    (tmp_path / "file").write_text("keep")
    out = str(tmp_path / target) if not target.startswith("/") else target
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--out", out)
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert (tmp_path / "file").read_text() == "keep"


# ---- 13. names that are too long -----------------------------------------------------------------


def test_13_long_run_names_are_refused_and_long_trial_names_shortened(tmp_path, capsys):
    long_name = TINY.replace("name: tiny", "name: " + "n" * 300)
    rc, err = _cli(capsys, "run", str(_write(tmp_path, long_name)), "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, "a run name of 300 characters is longer than 100")
    from lstmjax.experiment import expand

    sweep = ("sweep: {model.options.activation: [tanh, relu], train.learning_rate: [0.0123456],"
             " train.weight_decay: [0.000123456], train.warmup_steps: [3], train.b1: [0.8123],"
             " train.b2: [0.99912], train.eps: [1.234e-7], train.decay_factor: [0.43],"
             " train.final_lr_fraction: [0.0123], train.rms_decay: [0.123456],"
             " train.eval_batch_size: [9], train.grad_clip_value: [12.345]}\n")
    trials = expand(load_config(_write(tmp_path, TINY + sweep)))
    names = [t.name for t in trials]
    assert all(len(n.encode()) <= 120 for n in names) and len(set(names)) == 2
    assert names == [t.name for t in expand(load_config(_write(tmp_path, TINY + sweep)))]
    assert trials[1].values["model.options.activation"] == "relu"  # the full key is kept
    assert trials[1].cfg.model.options["activation"] == "relu"


# ---- 14. damaged files: report skips and names them, resume re-runs them -------------------------


@pytest.mark.parametrize("damage", [
    "truncated-metrics", "empty-summary",
    *(pytest.param(d, marks=pytest.mark.slow)
      for d in ("truncated-summary", "list-summary", "binary-summary")),
])
def test_14_report_skips_a_damaged_trial_and_reports_the_rest(ref, tmp_path, capsys, damage):
    run_dir, sw = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    t = r / "length-6"
    if damage == "truncated-metrics":
        text = (t / "metrics.jsonl").read_text()
        cut = text[: len(text) // 2].rstrip("}\n")  # inside a line, whatever the numbers
        (t / "metrics.jsonl").write_text(cut)
        bad = "metrics.jsonl"
    else:
        bad = "summary.json"
        content = {"truncated-summary": (t / bad).read_text()[:40], "empty-summary": "{}",
                   "list-summary": "[1, 2]"}.get(damage)
        if content is None:
            (t / bad).write_bytes(b"\xff\xfe\x00garbage")
        else:
            (t / bad).write_text(content)
    rc, err = _cli(capsys, "report", str(r))
    assert rc == 0, err
    assert f"length-6/{bad}: damaged" in err and "left out of the report" in err
    report = (r / "report.md").read_text()
    assert "damaged" in report and "## Damaged trials" in report
    rows = list(csv.DictReader((r / "results.csv").open()))
    assert {row["trial"] for row in rows} == {"length-4"}
    # --resume trains the damaged trial again, from its last valid checkpoint
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume")
    assert rc == 0, err
    assert (t / "metrics.jsonl").read_text() == (run_dir / "length-6" / "metrics.jsonl").read_text()
    assert json.loads((t / "summary.json").read_text())["per_seed"] == json.loads(
        (run_dir / "length-6" / "summary.json").read_text())["per_seed"]


def test_14_garbled_run_config_is_one_line_for_report_and_resume(ref, tmp_path, capsys):
    run_dir, sw = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    (r / "config.yaml").write_text("name: [unclosed\n\x00")
    before = _snapshot(r)
    rc, err = _cli(capsys, "report", str(r))
    _one_line_error(rc, err, "config.yaml: damaged")
    rc, err = _cli(capsys, "run", str(sw), "--out", str(r), "--resume")
    _one_line_error(rc, err, "config.yaml: damaged")
    assert _snapshot(r) == before


# ---- 15. a read-only run directory ---------------------------------------------------------------


def test_15_report_can_go_elsewhere_and_says_why_it_cannot_go_in_place(ref, tmp_path, capsys,
                                                                      monkeypatch):
    run_dir, _ = ref
    r = tmp_path / "r"
    shutil.copytree(run_dir, r)
    before = _snapshot(r)
    rc, err = _cli(capsys, "report", str(r), "--out", str(tmp_path / "elsewhere"))
    assert rc == 0, err
    assert (tmp_path / "elsewhere" / "report.md").exists()
    assert (tmp_path / "elsewhere" / "results.csv").exists()
    assert _snapshot(r) == before
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == r else real_access(p, m))
    rc, err = _cli(capsys, "report", str(r))
    _one_line_error(rc, err, f"{r}: is not writable (read-only?); pass --out DIR")


# ---- 16-18. validation gaps and messages ---------------------------------------------------------


@pytest.mark.parametrize("override,expected", [
    ('name="ok\\n"', "name: 'ok\\n' is not a valid run name"),
    ("train.learning_rate=.inf", "train.learning_rate: expected a finite number, got inf"),
    ("train.eps=.inf", "train.eps: expected a finite number, got inf"),
    ("train.weight_decay=.inf", "train.weight_decay: expected a finite number"),
    ("model.options.dtype=.nan", "model.options.dtype: expected a finite number, got nan"),
    ("model.cell=lstm", None),  # with forget_bias .nan below
    ("task.tolerance=.inf", "task.tolerance: expected a finite number"),
    ("sweep.task.length=[20, 20]", "sweep.task.length: 20 is listed twice"),
])
def test_16_17_meaningless_values_are_refused(tmp_path, capsys, override, expected):
    overrides = ["--set", override]
    if expected is None:
        overrides += ["--set", "model.options.forget_bias=.nan"]
        expected = "model.options.forget_bias: expected a finite number, got nan"
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), *overrides,
                   "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, expected)
    assert not (tmp_path / "r").exists()


def test_17_tilde_in_output_dir_is_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(_write(tmp_path, TINY), ["output.dir=~/runs"])
    from lstmjax.experiment.rundir import run_dir_for

    assert run_dir_for(cfg) == tmp_path / "home" / "runs" / "tiny"


def test_18_yaml_merge_keys_work(tmp_path):
    text = textwrap.dedent("""\
        name: merged
        defaults: &defaults {optimizer: sgd, momentum: 0.0, steps: 20, eval_every: 10}
        task: {name: adding, length: 4}
        train: {<<: *defaults, steps: 30}
    """)
    # merge keys are read; the helper section `defaults` is then an unknown key, said in one line
    with pytest.raises(ConfigError, match="^defaults: unknown key; the config takes name, "
                                          "description, task, model, train, sweep, [a-z, ]*$"):
        load_config(_write(tmp_path, text))
    cfg = load_config(_write(tmp_path, textwrap.dedent("""\
        name: merged
        task: &t {name: adding, length: 4}
        sweep: {task.length: [4, 6]}
        train: {<<: [{steps: 20, eval_every: 10}, {optimizer: sgd}], steps: 30}
    """)))
    assert (cfg.train.steps, cfg.train.eval_every, cfg.train.optimizer) == (30, 10, "sgd")


@pytest.mark.parametrize("override", [".train=5", "train.=5", "train..steps=5", "=5"])
def test_18_malformed_override_is_named(tmp_path, capsys, override):
    rc, err = _cli(capsys, "run", str(_write(tmp_path, TINY)), "--set", override,
                   "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, f"--set {override}: expected key=value with a dotted key")


def test_18_a_name_from_the_file_name_says_so(tmp_path, capsys):
    path = _write(tmp_path, TINY.replace("name: tiny\n", ""), "my exp.yaml")
    rc, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "r"))
    _one_line_error(rc, err, "the name comes from the file name 'my exp.yaml'; set `name:`")


# ---- 19. file modes follow the umask -------------------------------------------------------------


def test_19_files_respect_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    from lstmjax import _io

    old = os.umask(0o002)
    _io._umask.cache_clear()
    try:
        _io.atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o664
        os.chmod(tmp_path / "a.txt", 0o640)
        _io.atomic_write_text(tmp_path / "a.txt", "y")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    finally:
        os.umask(old)
        _io._umask.cache_clear()
    _io.atomic_write_text(tmp_path / "b.txt", "x")
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o666 & ~old


# ---- 20. `lstmjax bench` never runs the current directory's code ---------------------------------


def test_20_bench_ignores_benchmarks_in_the_current_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "run.py").write_text(
        "open('PWNED', 'w').write('x')\ndef main(argv):\n    return 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m lstmjax` would have it
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    # an installed lstmjax whose checkout has no benchmarks/ (a wheel)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site" / "lstmjax" / "cli.py"))
    rc, err = _cli(capsys, "bench", "--quick")
    _one_line_error(rc, err, "benchmarks not found")
    assert not (tmp_path / "PWNED").exists()


# ---- 21. a lost learning curve is reported -------------------------------------------------------


@pytest.mark.slow
def test_21_resume_after_metrics_were_deleted_warns(long_ref, tmp_path, capsys):
    text, _ = long_ref
    cfg = load_config(_write(tmp_path, text))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=out, progress=InterruptAfter(3), report=False)
    (out / "default" / "metrics.jsonl").unlink()
    capsys.readouterr()
    run(cfg, out_dir=out, resume=True, report=False)
    err = capsys.readouterr().err
    assert "no metrics for 2 evaluation(s) up to step 20" in err, err
    assert "trained again from the start" in err, err
    expected = long_ref[1]
    assert (out / "default" / "metrics.jsonl").read_text() == expected  # nothing lost


# ---- 22. a run that blew up without NaNs is flagged ----------------------------------------------


def test_22_adam_at_lr_1e3_is_flagged_as_blown_up(tmp_path):
    text = TINY.replace("optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01",
                        "optimizer: adam, grad_clip: null, learning_rate: 1000.0")
    cfg = load_config(_write(tmp_path, text))
    result = run(cfg, out_dir=tmp_path / "r")
    (summary,) = result["trials"]
    assert not any(s["diverged"] for s in summary["per_seed"])
    assert all(s["blew_up"] for s in summary["per_seed"])
    assert all(s["final_loss"] > 100 * summary["chance_loss"] for s in summary["per_seed"])
    assert summary["blew_up_seeds"] == 2
    rows = list(csv.DictReader((tmp_path / "r" / "results.csv").open()))
    assert {r["blew_up"] for r in rows} == {"True"}
    assert "2 blew up" in (tmp_path / "r" / "report.md").read_text()
