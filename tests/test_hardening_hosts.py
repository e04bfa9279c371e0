"""Several processes that do not all come, or do not all stay (issue 23): start-up and the loss
of a peer end within bounded, configurable times with one line naming the missing process,
no traceback and no C++ abort; a malformed --coordinator is one line before anything is
written. Subprocesses on the loopback address (the distributed runtime is process-global),
with timeouts of a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from test_hosts import CONFIG, ROOT, _lstmjax, _port

# two trials: process 0 trains the short one, process 1 the long one (one job each, in order;
# no early stop, so the long one cannot finish within a test)
TWO_SPEEDS = CONFIG.replace("sweep: {model.cell: [gru, rnn, lstm]}",
                            "sweep: {train.steps: [40, 100000]}").replace(
                                "seeds: 2}", "seeds: 2, early_stop: false}")
ABORT_MARKS = ("Traceback", "Check failed", "*** ", "Fatal Python error")


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def _one_error_line(stderr: str) -> str:
    for mark in ABORT_MARKS:
        assert mark not in stderr, stderr[-3000:]
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    return line


def _alone(tmp_path, process_id: int, port: int) -> subprocess.CompletedProcess:
    """One process of two, the other never started; a 3 s start-up timeout."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    return subprocess.run(
        _lstmjax(str(config), "--out", str(tmp_path / "out"), "--coordinator",
                 f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process_id),
                 "--startup-timeout", "3"),
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())


def test_a_process_that_never_starts_is_named_within_the_startup_timeout(tmp_path):
    port = _port()
    p = _alone(tmp_path, 0, port)
    assert p.returncode == 2
    line = _one_error_line(p.stderr)
    assert f"--coordinator 127.0.0.1:{port}: process 1 did not join within 3 s" in line
    assert "--startup-timeout" in line
    assert f"waiting for process 1 (of 2) to join at 127.0.0.1:{port}" in p.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_unreachable_coordinator_is_named_within_the_startup_timeout(tmp_path):
    port = _port()  # nobody listens there
    p = _alone(tmp_path, 1, port)
    assert p.returncode == 2
    line = _one_error_line(p.stderr)
    assert (f"--coordinator 127.0.0.1:{port}: cannot reach the coordinator (process 0) "
            "within 3 s") in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, problem", [
    ("notahost", "'notahost' is not an address"),
    ("localhost:abc", "port 'abc' is not a number in 1-65535"),
    ("localhost:0", "port '0' is not a number in 1-65535"),
    ("localhost:65536", "port '65536' is not a number in 1-65535"),
    ("::1:1234", "'::1:1234' is not an address"),  # IPv6 needs brackets: [::1]:1234
])
def test_a_malformed_coordinator_is_one_line_naming_the_value(tmp_path, capsys, value, problem):
    from lstmjax import cli

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    rc = cli.main(["run", str(config), "--out", str(tmp_path / "o"), "--coordinator", value,
                   "--num-processes", "2", "--process-id", "0"])
    assert rc == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --coordinator: ") and problem in line
    assert "HOST:PORT" in line
    assert not (tmp_path / "o").exists()


def test_the_cli_defaults_are_the_library_defaults():
    from lstmjax import cli
    from lstmjax.experiment import hosts

    assert (cli.STARTUP_TIMEOUT, cli.PEER_TIMEOUT) == (hosts.STARTUP_TIMEOUT,
                                                      hosts.PEER_TIMEOUT)


def test_a_killed_process_is_named_and_the_finished_trials_kept(tmp_path):
    """Process 1 is killed while it trains (its 100000-step trial), after process 0 finished
    its own (40 steps): process 0 ends within --peer-timeout naming process 1, its finished
    trial stays (summary.json), and the run directory's lock is released."""
    config = tmp_path / "c.yaml"
    config.write_text(TWO_SPEEDS)
    out, port = tmp_path / "out", _port()
    procs = [subprocess.Popen(
        _lstmjax(str(config), "--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                 "--num-processes", "2", "--process-id", str(i), "--peer-timeout", "3"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for i in range(2)]
    try:
        seen = []
        for line in procs[0].stderr:  # process 0's progress, until its trial is done
            seen.append(line)
            if "done in" in line:
                break
        assert any("done in" in ln for ln in seen), "".join(seen)
        assert procs[1].poll() is None  # still training its long trial
        procs[1].send_signal(signal.SIGKILL)
        stdout, rest = procs[0].communicate(timeout=90)
        stderr = "".join(seen) + rest
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 1, stderr[-3000:]
    line = _one_error_line(stderr)
    assert line.startswith("error: lost process 1 of 2: no sign of life for 3 s")
    assert "--resume" in line
    assert not (out / ".lstmjax.lock").exists() and (out / "config.yaml").exists()
    summary = json.loads((out / "steps-40" / "summary.json").read_text())
    assert summary["trial"] == "steps-40" and summary["steps"] == 40
    assert not (out / "steps-100000" / "summary.json").exists()
