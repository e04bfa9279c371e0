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


def _slurm_job_id() -> int:
    """A SLURM job id whose coordinator port (JAX: id % 4096 + 61440) is free here."""
    for job in range(os.getpid() % 4096, os.getpid() % 4096 + 4096):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", job % 4096 + 61440))
                return job
            except OSError:
                continue
    raise RuntimeError("no free port in 61440..65535")


def _two_processes(config: Path, out: Path, *extra: str, slurm: bool = False
                   ) -> list[subprocess.CompletedProcess]:
    """Two processes of one run; ``slurm``: as the two tasks of a SLURM job step on this
    host, each told only ``--coordinator auto`` (JAX reads the rest from SLURM_*)."""
    port, job = _port(), _slurm_job_id()

    def flags(i):
        if slurm:
            return ["--coordinator", "auto"], {
                "SLURM_JOB_ID": str(job), "SLURM_STEP_NODELIST": "localhost",
                "SLURM_NTASKS": "2", "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}
        return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                "--process-id", str(i)], {}

    procs = [
        subprocess.Popen(
            _lstmjax(str(config), "--out", str(out), *flags(i)[0], *extra),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu", **flags(i)[1]})
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
    again = _two_processes(config, tmp / "two", "--resume", slurm=True)
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
    # resumed as a SLURM job: `--coordinator auto` found both processes (process 1 says so)
    tmp, _, again = runs
    for p in again:
        assert p.returncode == 0, p.stderr[-2000:]
        assert "seeds x" not in p.stderr
    assert "process 1: trained" in again[1].stdout  # it was process 1 of 2
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


def test_coordinator_auto_without_a_cluster_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "KUBERNETES"))}
    p = subprocess.run(_lstmjax(str(config), "--out", str(tmp_path / "o"), "--coordinator",
                                "auto"), cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**env, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: --coordinator auto: no cluster environment found")
