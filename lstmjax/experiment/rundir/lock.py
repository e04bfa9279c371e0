"""The run directory's lock: one writing process per run directory."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from lstmjax.experiment.rundir.layout import LOCK_FILE, RunError, warn

__all__ = ["RunLock"]


class RunLock:
    """``with RunLock(run_dir):`` -- one writing process per run directory.

    The lock file holds ``{"pid", "host", "started", "token"}`` (``token``: random, drawn when
    the lock is taken; the lock is released only by the process whose token it still holds).
    It is created whole and atomically (written aside, then hard-linked into place, which fails
    if a lock exists). A lock left by a process that is gone (same host, no such pid) or that
    no process can hold (a damaged file, an impossible pid) is stale and taken over with a
    warning. ``force=True`` (``--force-unlock``) also takes over the lock of a process on
    another host, whose liveness cannot be checked from here; a live process on this host keeps
    its lock whatever ``force`` says.
    """

    def __init__(self, run_dir: Path, force: bool = False):
        self.path = Path(run_dir) / LOCK_FILE
        self.force = force
        self._token: str | None = None

    def __enter__(self) -> RunLock:
        host = socket.gethostname()
        token = secrets.token_hex(16)
        me = {
            "pid": os.getpid(),
            "host": host,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "token": token,
        }
        mine = json.dumps(me).encode()
        for _ in range(5):
            try:
                created = self._create(mine)
                if created and self._read_raw() == mine:  # ours (not moved aside meanwhile)
                    self._token = token
                    _remove_leftovers(self.path)
                    return self
                if not created:
                    stale = self._judge(host)  # raises if the holder keeps its lock
                    if stale is not None:
                        _move_aside(self.path, stale)
            except OSError as e:
                raise RunError(f"{self.path.parent}: cannot take its lock ({e.strerror})") from None
        raise RunError(f"{self.path.parent}: could not take its lock; try again")

    def check(self) -> None:
        """Without taking it: refuse if the lock is held by a process that keeps it."""
        if self.path.exists() or self.path.is_symlink():
            self._judge(socket.gethostname(), quiet=True)

    def _create(self, content: bytes) -> bool:
        """Create the lock file with ``content``, atomically; False if a lock file exists."""
        tmp = self.path.with_name(f"{LOCK_FILE}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            try:
                os.link(tmp, self.path)  # fails if the lock exists: create-if-absent, whole
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: exclusive create, then write
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _read_raw(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunError(f"{self.path}: cannot read the lock ({e.strerror})") from None

    def _judge(self, host: str, quiet: bool = False) -> bytes | None:
        """The lock file's content if it may be taken over (with a warning unless ``quiet``),
        None if it vanished; raises :class:`RunError` if its holder keeps it."""
        raw = self._read_raw()
        if raw is None:
            return None
        holder = _parse_lock(raw, host)
        if holder is None and not raw.strip():  # perhaps being written (exclusive create)
            time.sleep(0.2)
            raw = self._read_raw()
            if raw is None:
                return None
            holder = _parse_lock(raw, host)
        where = self.path.parent
        if isinstance(holder, str):  # no process can hold it
            if not quiet:
                warn(f"{where}: taking over its lock ({holder})")
            return raw
        if holder is None:
            if not quiet:
                warn(f"{where}: taking over its lock (the lock file {self.path.name} is damaged)")
            return raw
        pid, other, started = holder
        busy = f"{where} is in use by pid {pid} on {other} (started {started})"
        if other == host:
            if _alive(pid):
                if self.force:
                    raise RunError(f"{busy}; --force-unlock does not take the lock of a live "
                                   "process on this host: stop that process or wait for it")
                raise RunError(f"{busy}; wait or pass --force-unlock if that process is gone")
            why = "its process is gone"
        elif self.force:
            why = "forced; its host's processes cannot be checked from here"
        else:
            raise RunError(f"{busy}; wait or pass --force-unlock if that process is gone")
        if not quiet:
            warn(f"{where}: taking over the lock of pid {pid} on {other} ({why})")
        return raw

    def __exit__(self, *exc) -> None:
        """Release the lock -- only if the lock file is still this one's (after a takeover it is
        another process's, and left alone)."""
        if self._token is None:
            return
        mine, self._token = self._token, None
        try:
            raw = self.path.read_bytes()
            holder = _parse_json(raw)
            if holder is not None and holder.get("token") == mine:
                _move_aside(self.path, raw)
        except OSError:
            pass  # gone, or the directory with it: nothing of ours to release


def _parse_json(raw: bytes) -> dict | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _parse_lock(raw: bytes, host: str) -> tuple[int, str, Any] | str | None:
    """``(pid, host, started)`` of a lock file's holder; a reason (str) if the pid it names is
    one no process can have (not positive, beyond pid_t, or on this ``host`` above its largest
    pid and not running); None if the file is damaged."""
    data = _parse_json(raw)
    if data is None or not isinstance(data.get("host"), str) or "pid" not in data:
        return None
    pid = data["pid"]
    if type(pid) is not int:  # noqa: E721 -- bool and float are not pids
        return f"the lock file names pid {pid!r}, not a process id"
    beyond = pid > _max_pid() and not _alive(pid) if data["host"] == host else False
    if not 0 < pid <= _PID_T_MAX or beyond:
        return f"the lock file names pid {pid}, which no process can have"
    return pid, data["host"], data.get("started")


_PID_T_MAX = 2**31 - 1


def _max_pid() -> int:
    """The largest pid this host gives (Linux: ``kernel.pid_max``; else pid_t's range)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return _PID_T_MAX


def _move_aside(path: Path, expected: bytes) -> None:
    """Remove the lock file at ``path`` if it still holds ``expected``: renamed aside first
    (atomic: of two processes, one gets it), then deleted -- or, if it turned out to be a lock
    taken meanwhile, linked back into place."""
    aside = path.with_name(f"{LOCK_FILE}.{secrets.token_hex(8)}.old")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_bytes() != expected:
            try:
                os.link(aside, path)
            except OSError:
                pass
    finally:
        aside.unlink(missing_ok=True)


def _remove_leftovers(path: Path) -> None:
    """Delete the lock's own temporaries (``.tmp``, ``.old``) left by a process killed while
    taking or releasing it (older than a minute: not another process's, in progress)."""
    for p in path.parent.glob(f"{LOCK_FILE}.*"):
        try:
            if p.suffix in (".tmp", ".old") and time.time() - p.lstat().st_mtime > 60:
                p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (False for pids no process can have)."""
    if pid <= 0:
        return False  # 0 and -1 address process groups, not a process
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
