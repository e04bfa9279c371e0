"""Several processes (hosts) on one run directory, through ``jax.distributed``.

Every process of a ``jax.distributed`` job (``lstmjax run CONFIG --coordinator HOST:PORT
--num-processes P --process-id I``, or JAX's own cluster auto-detection) runs the same config
into the same shared run directory:

1. all processes check the config and the directory (nothing is written), then meet;
2. process 0 takes the directory's lock and prepares it, then they meet again;
3. each trains its share of the jobs (a gap frontier: of the variants) on its local devices,
   and, done, writes ``.lstmjax-process-<I>.json`` (its failures);
4. process 0 waits for every process's marker, then returns the whole run (read from the
   directory), and writes ``results.csv``, the report and the plots.

``--resume`` works as for one process: each process skips its finished trials. The meetings
are ``multihost_utils.sync_global_devices`` (on CPU through gloo collectives, which the CLI
turns on); the last wait polls the shared directory, so a long run needs no collective timeout.

Bounded waits (:func:`join`, the CLI's entry): joining gives up after ``startup_timeout``
seconds with one line naming the process that did not come (or the coordinator that cannot
be reached), and, once joined, every process beats in the coordinator's key-value store and
watches the others' beats: a process silent for ``peer_timeout`` seconds is named in one line,
this process's lock is released and it exits (status 1); the finished trials stay in the run
directory for ``--resume``. Both watchdogs end the process before XLA's own timeouts (set
longer) would abort it with a C++ stack trace. Not covered: process 0 (the coordinator) dying
takes the coordination service with it, and XLA aborts the other processes at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

from lstmjax._io import atomic_write_json
from lstmjax.experiment.errors import ConfigError, one_line
from lstmjax.experiment.rundir.layout import PROCESS_MARKER

__all__ = ["rank_and_count", "meet", "marker", "write_done", "wait_for_all", "clear_markers",
           "parse_coordinator", "join", "running", "left", "stop_watching", "wait_collected",
           "STARTUP_TIMEOUT", "PEER_TIMEOUT"]

MARKER = PROCESS_MARKER  # (named in lstmjax.experiment.rundir.layout)
STARTUP_TIMEOUT = 120.0  # s: default of --startup-timeout
PEER_TIMEOUT = 100.0  # s: default of --peer-timeout (JAX's own heartbeat timeout is 100 s)
LOST_STATUS = 1  # exit status of a process that lost a peer
_BEAT = "lstmjax/alive/"
_LEFT = "lstmjax/left/"


def parse_coordinator(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:1234``) -> ``(host, port)``; a
    :class:`ConfigError` naming the value otherwise (also for a host name that does not
    resolve)."""
    expected = "expected HOST:PORT, e.g. 10.0.0.1:1234 (process 0's address; port 1-65535)"
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or (":" in host and not text.startswith("[")):
        raise ConfigError(f"--coordinator: {text!r} is not an address; {expected}")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"--coordinator: {text!r}: port {port!r} is not a number in 1-65535; "
                          f"{expected}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"--coordinator: {text!r}: unknown host {host!r} ({one_line(e)}); "
                          f"{expected}") from None
    return host, int(port)


def join(coordinator: str | None, num_processes: int | None, process_id: int | None, *,
         startup_timeout: float = STARTUP_TIMEOUT, peer_timeout: float = PEER_TIMEOUT) -> None:
    """Program entry: ``jax.distributed.initialize``, given up after ``startup_timeout``
    seconds with one line on stderr (exit status 2; progress lines while it waits), then
    watch the other processes (a silent one for ``peer_timeout`` seconds ends this one, see
    the module's docstring). ``coordinator`` None: JAX detects the cluster (a ValueError
    names what it could not find)."""
    import jax

    joined = threading.Event()
    waiter = threading.Thread(target=_wait_for_start, name="lstmjax-startup", daemon=True,
                              args=(joined, coordinator, num_processes, process_id,
                                    startup_timeout))
    waiter.start()
    try:
        # XLA's own timeouts are set past ours: its expiry aborts the process (a C++ trace)
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes,
            process_id=process_id, initialization_timeout=math.ceil(startup_timeout) + 30,
            heartbeat_timeout_seconds=math.ceil(2 * peer_timeout) + 10)
    except RuntimeError as e:  # e.g. the port is taken on process 0's host
        raise ConfigError(f"--coordinator {coordinator or 'auto'}: cannot join "
                          f"({one_line(e)})") from None
    finally:
        joined.set()
    _Watch.start(peer_timeout)


def _wait_for_start(joined: threading.Event, coordinator, count, rank, timeout: float) -> None:
    """The start-up watchdog: progress lines while the processes gather, then one line and
    ``os._exit(2)`` if they did not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    say = min(2.0, timeout / 2)
    while not joined.wait(max(0.0, min(say, deadline - time.monotonic()))):
        waiting, what, todo = _startup_problem(coordinator, count, rank, timeout)
        left = deadline - time.monotonic()
        if left > 0:
            print(f"{waiting} ({left:.0f} s left of --startup-timeout) ...",
                  file=sys.stderr, flush=True)
            say = 15.0
        else:
            _exit(f"--coordinator {coordinator or 'auto'}: {what}; {todo}, or allow longer "
                  "with --startup-timeout SECONDS", 2)


def _startup_problem(coordinator, count, rank, timeout: float) -> tuple[str, str, str]:
    """(progress line, problem, what to do) while the processes have not all joined."""
    if coordinator is None:  # --coordinator auto
        return ("waiting for the job's processes to join", f"the job's processes did not all "
                f"join within {timeout:g} s", "check that every task of the job started")
    others = "process 1" if count == 2 else f"processes 1..{count - 1}"
    start = (f"start {'it' if count == 2 else 'each missing one'} with the same config, --out, "
             f"--coordinator {coordinator}, --num-processes {count} and "
             + ("--process-id 1" if count == 2 else "its --process-id"))
    if rank == 0:
        return (f"waiting for {others} (of {count}) to join at {coordinator}",
                f"{others if count == 2 else f'not all of {others}'} did not join within "
                f"{timeout:g} s (this is process 0 of {count})", start)
    if not _reachable(coordinator):
        return (f"waiting for the coordinator (process 0) at {coordinator}",
                f"cannot reach the coordinator (process 0) within {timeout:g} s",
                "start process 0 there, or give its address (HOST:PORT reachable from this "
                "host)")
    return (f"waiting for all {count} processes to join at {coordinator}",
            f"not all {count} processes joined within {timeout:g} s (this is process {rank})",
            start)


def _reachable(coordinator: str) -> bool:
    host, _, port = coordinator.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


class _Watch:
    """Each process beats (a counter under ``lstmjax/alive/<rank>`` in the coordinator's
    key-value store) and watches the others' counters; one that has not moved for
    ``timeout`` seconds is lost. Two daemon threads: the beater (its calls may block on a
    dead coordinator) and the judge (never blocks)."""

    current: _Watch | None = None

    def __init__(self, client, rank: int, count: int, timeout: float):
        self.client, self.rank, self.timeout = client, rank, timeout
        now = time.monotonic()
        self.seen = {p: (None, now) for p in range(count) if p != rank}
        self.stopped = threading.Event()
        self.cleanups: list = []

    @classmethod
    def start(cls, timeout: float) -> None:
        import jax
        from jax._src import distributed

        if jax.process_count() < 2 or distributed.global_state.client is None:
            return
        cls.current = watch = cls(distributed.global_state.client, jax.process_index(),
                                  jax.process_count(), timeout)
        interval = min(1.0, timeout / 5)
        for name, fn in (("beat", watch._beat), ("judge", watch._judge)):
            threading.Thread(target=fn, args=(interval,), name=f"lstmjax-{name}",
                             daemon=True).start()

    def _beat(self, interval: float) -> None:
        n = 0
        while not self.stopped.wait(interval if n else 0):
            n += 1
            with contextlib.suppress(Exception):  # a dead coordinator: the judge decides
                self.client.key_value_set(f"{_BEAT}{self.rank}", str(n), allow_overwrite=True)
                for key, value in self.client.key_value_dir_get(_BEAT):
                    peer = int(key.rsplit("/", 1)[1])
                    if peer in self.seen and self.seen[peer][0] != value:
                        self.seen[peer] = (value, time.monotonic())

    def _judge(self, interval: float) -> None:
        while not self.stopped.wait(interval / 2):
            now = time.monotonic()
            lost = [p for p, (_, t) in sorted(self.seen.items()) if now - t > self.timeout]
            if lost and not self.stopped.is_set():
                count = len(self.seen) + 1
                names = ", ".join(f"process {p}" + (" (the coordinator)" if p == 0 else "")
                                  for p in lost)
                for cleanup in list(self.cleanups):
                    with contextlib.suppress(Exception):
                        cleanup()
                _exit(f"lost {names} of {count}: no sign of life for {self.timeout:g} s "
                      "(--peer-timeout; killed, crashed, or its host is unreachable); the "
                      "finished trials are kept in the run directory: start all processes "
                      "again with --resume to train the rest", LOST_STATUS)


def _exit(message: str, status: int) -> None:
    """One ``error:`` line, then end the process at once (from a watchdog thread: the main
    thread may be blocked inside XLA)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        print(f"error: {message}", file=sys.stderr, flush=True)
    os._exit(status)


@contextlib.contextmanager
def running(lock):
    """This process's part of the run: while inside, a lost peer (the watchdog ending this
    process) first releases ``lock`` (a held :class:`~lstmjax.experiment.rundir.RunLock`;
    None: nothing to release); on leaving, however it leaves, the other processes are told
    (:func:`left`), so none waits for a process that is gone."""
    watch = _Watch.current
    cleanup = lambda: lock.__exit__(None, None, None)  # noqa: E731
    if lock is not None and watch is not None:
        watch.cleanups.append(cleanup)
    try:
        yield
    finally:
        if lock is not None and watch is not None:
            watch.cleanups.remove(cleanup)
        client = _client()
        if client is not None:
            with contextlib.suppress(Exception):
                client.key_value_set(f"{_LEFT}{rank_and_count()[0]}", "1", allow_overwrite=True)


def left(rank: int) -> bool:
    """Whether process ``rank`` has left its part of the run (:func:`running`)."""
    client = _client()
    if client is None:
        return False
    try:
        client.key_value_try_get(f"{_LEFT}{rank}")
    except Exception:  # noqa: BLE001 -- not found (or no coordinator): not known to have left
        return False
    return True


def _client():
    """This process's ``jax.distributed`` client, or None."""
    from jax._src import distributed

    return distributed.global_state.client


def stop_watching() -> None:
    """The processes are done with each other (the run gathered): a process that exits now
    is no loss."""
    if _Watch.current is not None:
        _Watch.current.stopped.set()


def rank_and_count() -> tuple[int, int]:
    """(this process's index, number of processes); (0, 1) without ``jax.distributed``."""
    import jax

    return jax.process_index(), jax.process_count()


def meet(name: str) -> None:
    """Wait until every process gets here (no-op for one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        try:
            multihost_utils.sync_global_devices(f"lstmjax:{name}")
        except Exception as e:  # noqa: BLE001 -- a collective broken by a lost process
            from lstmjax.experiment.rundir.layout import RunError

            raise RunError(f"processes: the meeting {name!r} failed ({one_line(e)}); is "
                           "every process still running?") from None


def marker(run_dir: Path, rank: int) -> Path:
    return run_dir / MARKER.format(rank)


def clear_markers(run_dir: Path, rank: int) -> None:
    """Remove this process's marker of an earlier (interrupted) run."""
    path = marker(run_dir, rank)
    if path.is_file() and not path.is_symlink():
        path.unlink()


def write_done(run_dir: Path, rank: int, failures: list[dict]) -> None:
    atomic_write_json(marker(run_dir, rank), {"process": rank, "failed": failures})


def wait_collected(run_dir: Path, rank: int, poll_s: float = 0.5) -> None:
    """Process ``rank`` > 0: wait until process 0 took its marker (so each process watches
    the others until the run is gathered, and none exits into JAX's shutdown barrier while
    another still trains)."""
    while marker(run_dir, rank).exists() and not left(0):
        time.sleep(poll_s)


def wait_for_all(run_dir: Path, count: int, poll_s: float = 0.5) -> list[dict]:
    """Process 0: wait for the markers of processes 1..count-1; returns their failures and
    removes the markers."""
    failures: list[dict] = []
    for rank in range(1, count):
        path = marker(run_dir, rank)
        while True:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                break
            except (OSError, ValueError):
                if left(rank) and not path.exists():
                    from lstmjax.experiment.rundir.layout import RunError

                    raise RunError(f"process {rank} ended before finishing its share of the "
                                   "run (its own output says why); the finished trials are "
                                   "kept: run all processes again with --resume") from None
                time.sleep(poll_s)
        failures += list(data.get("failed", []))
        path.unlink()
    return failures
