"""Several processes on one run directory through jax.distributed (lstmjax.experiment.hosts):
two processes on the loopback address give the same results.csv as one process, and a resume
of the two-process run trains nothing again. Subprocesses: the distributed runtime is
process-global."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
name: hosts
task: {name: adding, length: 5}
model: {cell: gru, hidden_size: 6}
train: {learning_rate: 0.01, batch_size: 4, steps: 40, eval_every: 20, eval_batch_size: 8,
        seeds: 2}
sweep: {model.cell: [gru, rnn, lstm]}
output: {progress: plain, plots: false}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lstmjax(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstmjax", "run", *args, "--devices", "1"]


def _two_processes(config: Path, out: Path, *extra: str) -> list[subprocess.CompletedProcess]:
    port = _port()
    procs = [
        subprocess.Popen(
            _lstmjax(str(config), "--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                     "--num-processes", "2", "--process-id", str(i), *extra),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"})
        for i in range(2)
    ]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hosts")
    config = tmp / "hosts.yaml"
    config.write_text(CONFIG)
    single = subprocess.run(_lstmjax(str(config), "--out", str(tmp / "one")), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    two = _two_processes(config, tmp / "two")
    again = _two_processes(config, tmp / "two", "--resume")
    return tmp, two, again


def test_two_processes_write_the_results_of_one(runs):
    tmp, two, _ = runs
    for p in two:
        assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp / "two" / "results.csv").read_text() == (tmp / "one" / "results.csv").read_text()
    assert (tmp / "two" / "report.md").exists()
    assert "process 1: trained" in two[1].stdout
    assert "results:" in two[0].stdout
    # each process trained its share: the trial lines of the two processes are disjoint
    started = [{line.split()[1].rstrip(":") for line in p.stderr.splitlines()
                if "seeds x" in line} for p in two]
    assert started[0] and started[1] and not started[0] & started[1]
    assert started[0] | started[1] == {"cell-gru", "cell-rnn", "cell-lstm"}
    assert not list((tmp / "two").glob(".lstmjax-process-*"))  # markers cleaned up


def test_a_resumed_two_process_run_trains_nothing_again(runs):
    tmp, _, again = runs
    for p in again:
        assert p.returncode == 0, p.stderr[-2000:]
        assert "seeds x" not in p.stderr
    assert (tmp / "two" / "results.csv").read_text() == (tmp / "one" / "results.csv").read_text()


def test_several_process_flags_go_together(tmp_path, capsys):
    from lstmjax import cli

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    assert cli.main(["run", str(config), "--num-processes", "2"]) == 2
    err = capsys.readouterr().err
    assert "--coordinator, --process-id: several processes need" in err
    assert cli.main(["run", str(config), "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                     "--process-id", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--process-id: 2 is not in 0..1" in capsys.readouterr().err
