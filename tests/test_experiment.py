"""Runs and results: the results directory, report numbers vs metrics, divergence, resume (an
interrupted run and a SIGKILLed subprocess), atomic writes. Tiny: rnn, hidden 8, length <= 6."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _reporters import InterruptAfter

from lstmjax import _io, cli
from lstmjax.experiment import ConfigError, RunError, load_config, read_metrics, run
from lstmjax.experiment.stats import wilson_interval

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 1000, eval_every: 10, eval_batch_size: 8, seeds: 2}
output: {checkpoint_every: 100, progress: none}
"""
SWEEP = "sweep: {train.learning_rate: [0.01, 1.0e+12], task.length: [4, 6]}\n"
TRIALS = [
    "learning_rate-0.01__length-4", "learning_rate-0.01__length-6",
    "learning_rate-1e+12__length-4", "learning_rate-1e+12__length-6",
]  # fmt: skip


def _config(tmp_path: Path, text: str, overrides=()):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path, load_config(path, overrides=list(overrides))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 4-trial sweep (two learning rates x two gaps); lr=1e12 diverges. Checkpointed only at
    the end (an output setting: the metrics do not depend on it, and each of the 40 orbax saves
    of checkpoint_every=100 costs ~0.5 s); the resume tests below checkpoint every 100."""
    tmp = tmp_path_factory.mktemp("e2e")
    _, cfg = _config(tmp, TINY + SWEEP, ["output.checkpoint_every=1000"])
    result = run(cfg, out_dir=tmp / "run")
    return tmp / "run", result


def test_run_writes_every_file(finished):
    run_dir, result = finished
    assert (run_dir / "config.yaml").exists()
    for name in TRIALS:
        tdir = run_dir / name
        for f in ("config.yaml", "metrics.jsonl", "summary.json"):
            assert (tdir / f).stat().st_size > 0, (name, f)
        steps = "10" if name.startswith("learning_rate-1e+12") else "1000"  # diverged at once
        assert [p.name for p in (tdir / "checkpoints").iterdir()] == [steps]
    for f in ("results.csv", "report.md", "plots/solved_vs_gap.png", "plots/learning_curves.png"):
        assert (run_dir / f).stat().st_size > 0, f
    assert (run_dir / "plots/solved_vs_gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [t["trial"] for t in result["trials"]] == TRIALS
    assert not list(run_dir.rglob(".*.tmp"))  # no temporary files left behind
    assert result["report"]["table"] in (run_dir / "report.md").read_text()


def test_results_csv_has_one_row_per_trial_and_seed(finished):
    run_dir, _ = finished
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    assert len(rows) == 4 * 2
    for column in ("trial", "cell", "length", "seed", "solved", "steps_to_solve", "final_loss",
                   "chance_loss", "diverged", "train.learning_rate"):
        assert column in rows[0]
    assert [(r["trial"], r["seed"]) for r in rows] == [(t, s) for t in TRIALS for s in ("0", "1")]
    assert {r["cell"] for r in rows} == {"rnn"} and {r["length"] for r in rows} == {"4", "6"}


def test_diverging_trials_are_marked_and_others_continue(finished):
    run_dir, result = finished
    by_name = {t["trial"]: t for t in result["trials"]}
    for name in TRIALS:
        seeds = by_name[name]["per_seed"]
        if "1e+12" in name:
            assert all(s["diverged"] and s["diverged_step"] >= 1 for s in seeds)
            assert all(s["final_loss"] is None and not s["solved"] for s in seeds)
        else:
            assert not any(s["diverged"] for s in seeds)
            assert all(s["steps_trained"] == 1000 and s["final_loss"] > 0 for s in seeds)
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    assert {r["diverged"] for r in rows if "1e+12" in r["trial"]} == {"True"}
    assert "diverged" in (run_dir / "report.md").read_text()


def _from_metrics(lines: list[dict]) -> tuple[int, int, float | None, float | None]:
    """(solved seeds, seeds, median steps to solve, median final loss) from metrics lines."""
    seeds = sorted({m["seed"] for m in lines})
    first_solve, last = {}, {}
    for m in lines:
        if m["solved"] and m["seed"] not in first_solve:
            first_solve[m["seed"]] = m["step"]
        last[m["seed"]] = m
    finals = [last[s]["loss"] for s in seeds if not last[s]["diverged"]]
    steps = list(first_solve.values())
    return (len(steps), len(seeds), statistics.median(steps) if steps else None,
            statistics.median(finals) if finals else None)


def test_report_numbers_match_metrics(finished):
    run_dir, _ = finished
    text = (run_dir / "report.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in TRIALS:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(TRIALS)
    chance = 1 / 6
    for name in TRIALS:
        solved, n, steps, final = _from_metrics(read_metrics(run_dir / name / "metrics.jsonl"))
        _, variant, gap, solved_txt, ci_txt, steps_txt, loss_txt, chance_txt, _, _ = rows[name]
        assert solved_txt == f"{solved}/{n}"
        lo, hi = wilson_interval(solved, n)  # checked against its closed form elsewhere
        ci = f"{round(100 * lo)}–{round(100 * hi)}%"
        assert ci_txt == ci
        assert steps_txt == ("–" if steps is None else str(int(steps)))
        assert loss_txt == ("–" if final is None else f"{final:.4g}")
        assert chance_txt == f"{chance:.4g}"
        # the headline table: variant row, gap column
        by_gap = text.split("## Solved fraction by gap")[1].split("## Trials")[0]
        head = [ln for ln in by_gap.splitlines() if ln.startswith(f"| {variant} |")]
        gaps = re.findall(r"gap (\d+)", by_gap)
        entry = head[0].strip("|").split("|")[1 + gaps.index(gap)].strip()
        ratio = "diverged" if final is None else f"{final / chance:.2f}"
        assert entry == f"{solved}/{n} ({ci}) · {'–' if steps is None else int(steps)} · {ratio}"


def test_report_command_regenerates(finished, capsys, tmp_path):
    run_dir, _ = finished
    before = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    assert cli.main(["report", str(run_dir), "--no-plots"]) == 0
    assert (run_dir / "report.md").read_text() == before
    assert "| variant | gap 4 | gap 6 |" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_existing_run_dir_needs_resume(finished, tmp_path):
    run_dir, _ = finished
    _, cfg = _config(tmp_path, TINY + SWEEP)
    with pytest.raises(RunError,
                       match=r"already exists; continue it with --resume \(resume=True in Python"):
        run(cfg, out_dir=run_dir)
    _, other = _config(tmp_path, TINY + SWEEP, ["train.steps=20"])
    with pytest.raises(RunError, match=r"train.steps: stored 1000, now 20"):
        run(other, out_dir=run_dir, resume=True)
    assert issubclass(RunError, ConfigError)  # the CLI prints it and exits 2


def test_resume_of_a_finished_run_skips_every_trial(finished, tmp_path):
    run_dir, result = finished
    _, cfg = _config(tmp_path, TINY + SWEEP)
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json")}
    again = run(cfg, out_dir=run_dir, resume=True, report=False)
    assert again["trials"] == json.loads(json.dumps(result["trials"]))
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json")} == mtimes


def test_interrupted_run_resumes_to_identical_metrics(finished, tmp_path):
    run_dir, _ = finished
    # the sweep's first trial on its own (same trial config => same metrics as in `finished`)
    _, cfg = _config(tmp_path, TINY, ["output.checkpoint_every=10"])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=out, progress=InterruptAfter(2))
    tdir = out / "default"
    assert [p.name for p in (tdir / "checkpoints").iterdir()] == ["10"]
    assert not (tdir / "summary.json").exists()
    assert {m["step"] for m in read_metrics(tdir / "metrics.jsonl")} == {10}
    # what a kill at other moments leaves: metrics written past the last checkpoint, a
    # half-written orbax checkpoint and a temporary file of an atomic write
    with (tdir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 20, "seed": 0, "loss": 123.0}) + "\n")
    (tdir / "checkpoints" / "20.orbax-checkpoint-tmp-1700000000").mkdir()
    (tdir / ".summary.json.abc.tmp").write_text("{")
    # resumed with the sweep's checkpoint interval (an output setting, free to differ on
    # resume): checkpointing every 10 of the 1000 steps would make ~100 orbax saves
    _, resumed = _config(tmp_path, TINY)
    run(resumed, out_dir=out, resume=True, report=False)
    assert not list(tdir.rglob("*tmp*"))
    expected = (run_dir / TRIALS[0] / "metrics.jsonl").read_text()
    assert (tdir / "metrics.jsonl").read_text() == expected
    assert json.loads((tdir / "summary.json").read_text())["resumed_from_step"] == 10


def test_sigkilled_subprocess_resumes_to_identical_metrics(finished, tmp_path, capsys,
                                                          in_process_env):
    # the whole sweep: its two learning rates per gap train as one program, and the resumed
    # program (the diverged trial standing in, frozen) must reproduce it bit for bit
    run_dir, _ = finished
    path, cfg = _config(tmp_path, TINY + SWEEP)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmjax", "run", str(path), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=in_process_env,
    )
    ckpts = out / TRIALS[0] / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / TRIALS[0] / "summary.json").exists(), "killed too late"
    assert cli.main(["run", str(path), "--out", str(out), "--resume", "--progress", "plain"]) == 0
    assert "resumed from step" in capsys.readouterr().err
    for name in TRIALS:
        expected = (run_dir / name / "metrics.jsonl").read_text()
        assert (out / name / "metrics.jsonl").read_text() == expected, name
        a = json.loads((out / name / "summary.json").read_text())
        b = json.loads((run_dir / name / "summary.json").read_text())
        assert a["per_seed"] == b["per_seed"], name


# ---- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    _io.atomic_write_json(path, {"a": 1})

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_json_safe_writes_strict_json(tmp_path):
    import numpy as np

    path = tmp_path / "s.json"
    _io.atomic_write_json(path, {"x": float("nan"), "y": np.float32(2.5), "z": [np.int32(3)]})
    assert json.loads(path.read_text()) == {"x": None, "y": 2.5, "z": [3]}
