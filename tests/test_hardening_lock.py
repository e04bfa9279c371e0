"""Hardening of the run directory's lock and of checkpoint saves (issue 23): --force-unlock never
displaces a live process on this host; a lock is released only by its holder; a lock file no
process can hold is taken over; a full disk during a checkpoint save is one line, no orbax
tracebacks, and --resume continues. Each test reproduces its case on the code before the fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lstmjax import cli
from lstmjax.experiment import RunError
from lstmjax.experiment.rundir import LOCK_FILE, RunLock

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 2}
output: {checkpoint_every: 10, progress: none, plots: false}
"""


def _config(tmp: Path) -> str:
    path = tmp / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY))
    return str(path)


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if not ln.startswith("warning: ")]


@pytest.fixture
def sleeper():
    """A live process on this host (to hold a lock)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


# ---- 1. --force-unlock and a live process on this host ---------------------------------------


def test_force_unlock_refuses_live_same_host_holder(tmp_path, capsys, sleeper):
    out = tmp_path / "run"
    out.mkdir()
    host = socket.gethostname()
    lock = out / LOCK_FILE
    lock.write_text(json.dumps({"pid": sleeper.pid, "host": host, "started": "2026-12-01T10:00"}))
    before = lock.read_bytes()
    rc = cli.main(["run", _config(tmp_path), "--out", str(out), "--resume", "--force-unlock"])
    err = capsys.readouterr().err
    lines = _errors(err)
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"in use by pid {sleeper.pid} on {host}" in lines[0]
    assert "stop that process or wait" in lines[0]
    assert "Traceback" not in err and "taking over" not in err
    assert lock.read_bytes() == before  # the live holder keeps its lock
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # nothing written


def test_force_unlock_takes_over_a_dead_same_host_holder(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    with RunLock(tmp_path, force=True):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead.pid}" in capsys.readouterr().err
    assert not (tmp_path / LOCK_FILE).exists()


# ---- 2. a lock is released only by the process that holds it -------------------------------


def test_release_leaves_the_lock_of_the_process_that_took_it_over(tmp_path, monkeypatch):
    first = RunLock(tmp_path)
    first.__enter__()
    # A process on another host takes the lock over with --force-unlock (it cannot check ours).
    monkeypatch.setattr(socket, "gethostname", lambda: "elsewhere")
    second = RunLock(tmp_path, force=True)
    second.__enter__()
    monkeypatch.undo()
    taken = (tmp_path / LOCK_FILE).read_bytes()
    first.__exit__(None, None, None)  # the old holder ends: it must not delete the new lock
    assert (tmp_path / LOCK_FILE).read_bytes() == taken
    with pytest.raises(RunError, match="in use by pid .* on elsewhere"):
        RunLock(tmp_path).__enter__()  # a third process is still kept out
    assert (tmp_path / LOCK_FILE).read_bytes() == taken


def test_lock_file_is_complete_and_names_its_holder_once_taken(tmp_path):
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert len(holder["token"]) >= 16
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]  # no temporaries
    assert list(tmp_path.iterdir()) == []


def test_a_stale_lock_judged_by_two_processes_is_taken_by_one(tmp_path, monkeypatch):
    """Two processes find the same stale lock; the first takes it over; the second, acting on
    what it read before, must not remove the first's new lock."""
    from lstmjax.experiment.rundir import lock as rundir  # (where RunLock looks _alive up)

    stale = json.dumps({"pid": -5, "host": socket.gethostname()}).encode()
    (tmp_path / LOCK_FILE).write_bytes(stale)
    first = RunLock(tmp_path)
    first.__enter__()
    taken = (tmp_path / LOCK_FILE).read_bytes()
    monkeypatch.setattr(RunLock, "_judge", lambda self, host, quiet=False: stale)
    monkeypatch.setattr(rundir, "_alive", lambda pid: True)
    with pytest.raises(RunError, match="could not take its lock"):
        RunLock(tmp_path).__enter__()
    assert (tmp_path / LOCK_FILE).read_bytes() == taken
    first.__exit__(None, None, None)
    assert not (tmp_path / LOCK_FILE).exists()


# ---- 3. lock files no process can hold -------------------------------------------------------


@pytest.mark.parametrize("content, why", [
    ('{"pid": 100000000000000000000, "host": "%s"}', "no process can have"),
    ('{"pid": 2147483648, "host": "%s"}', "no process can have"),
    ('{"pid": -1, "host": "%s"}', "no process can have"),
    ('{"pid": 0, "host": "%s"}', "no process can have"),
    ('{"pid": 2147483647, "host": "%s"}', "no process can have"),
    ('{"pid": -1, "host": "elsewhere"}', "no process can have"),
    ('{"pid": 1.5, "host": "%s"}', "not a process id"),
    ('{"pid": "1", "host": "%s"}', "not a process id"),
    ('{"pid": true, "host": "%s"}', "not a process id"),
    ('{"pid": 1}', "damaged"),
    ('[1, 2]', "damaged"),
    ('{"pid": 1, "ho', "damaged"),
    ('', "damaged"),
    ('\udcff', "damaged"),
])  # fmt: skip
def test_a_lock_no_process_can_hold_is_taken_over_with_one_warning(tmp_path, capsys, content,
                                                                    why):
    if "%s" in content:
        content = content % socket.gethostname()
    (tmp_path / LOCK_FILE).write_bytes(content.encode("utf-8", "surrogateescape"))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("warning: "), err
    assert "taking over its lock" in err and why in err, err
    assert not (tmp_path / LOCK_FILE).exists()


def test_run_with_a_lock_naming_a_huge_pid_trains_without_a_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(
        json.dumps({"pid": 10**20, "host": socket.gethostname(), "started": "x"}))
    rc = cli.main(["run", _config(tmp_path), "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err and "pid 100000000000000000000" in err
    assert (out / "default" / "summary.json").exists()
    assert not (out / LOCK_FILE).exists()


# ---- 4. a full disk during a checkpoint save ---------------------------------------------------

# The checkpoint's array writes (tensorstore, orbax's file layer for arrays) fail as a full disk
# does, in a subprocess; the rest of the run directory is written as usual. Tensorstore itself
# reports a full disk as a ValueError carrying the OS error code (the message as it words it).
FULL_DISK = """\
import errno, os, sys
import tensorstore as ts

def write(self, *args, **kwargs):
    async def full():
        raise {error}
    return full()

ts.TensorStore.write = write
from lstmjax import cli
sys.exit(cli.main(sys.argv[1:]))
"""
AS_OSERROR = "OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))"
AS_TENSORSTORE = ("ValueError('RESOURCE_EXHAUSTED: Error writing \"x/0\" in OCDBT database: "
                  "Failed to write 8 bytes to file 17: No space left on device "
                  "[os_error_code=28]')")


@pytest.mark.parametrize("error", [AS_OSERROR, AS_TENSORSTORE], ids=["oserror", "tensorstore"])
def test_disk_full_during_checkpoint_save_is_one_line_and_resume_continues(tmp_path, error):
    out = tmp_path / "run"
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK.format(error=error))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cfg = _config(tmp_path)
    proc = subprocess.run([sys.executable, str(script), "run", cfg, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[:3000]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[:3000]
    assert lines[0].startswith(f"error: {out / 'default' / 'checkpoints'}: No space left on "
                               "device"), lines[0]
    assert "--resume" in lines[0]
    # Space freed: the run continues and finishes.
    proc = subprocess.run([sys.executable, "-m", "lstmjax", "run", cfg, "--out", str(out),
                           "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[:3000]
    assert "Traceback" not in proc.stderr
    assert (out / "default" / "summary.json").exists()
