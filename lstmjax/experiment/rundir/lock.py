"""The run directory's lock: one writing process per run directory."""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

from lstmjax.experiment.rundir.layout import LOCK_FILE, RunError, warn

__all__ = ["RunLock"]



class RunLock:
    """``with RunLock(run_dir):`` -- one writing process per run directory.

    The lock file holds ``{"pid", "host", "started"}``. A lock left by a process that is gone
    (same host, no such pid) is stale and taken over with a warning; ``force=True``
    (``--force-unlock``) takes over any lock.
    """

    def __init__(self, run_dir: Path, force: bool = False):
        self.path = Path(run_dir) / LOCK_FILE
        self.force = force
        self._held = False

    def __enter__(self) -> RunLock:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_or_refuse(me["host"])
                continue
            except OSError as e:
                raise RunError(f"{self.path.parent}: cannot take its lock ({e.strerror})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise RunError(f"{self.path.parent}: could not take its lock; try again")

    def check(self) -> None:
        """Without taking it: refuse if another live process holds the lock (and not ``force``)."""
        if self.path.exists() or self.path.is_symlink():
            self._holder(socket.gethostname())

    def _holder(self, host: str):
        """``(pid, host, started, stale)`` of the lock's holder; raises if it is live."""
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            pid, other, started = int(holder["pid"]), str(holder["host"]), holder.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: a process killed while writing it -- stale
        stale = other == host and not _alive(pid)
        if not (stale or self.force):
            raise RunError(
                f"{self.path.parent} is in use by pid {pid} on {other} (started {started}); "
                "wait or pass --force-unlock if that process is gone"
            )
        return pid, other, started, stale

    def _take_over_or_refuse(self, host: str) -> None:
        holder = self._holder(host)
        if holder is not None:
            pid, other, _, stale = holder
            why = "forced" if not stale else "its process is gone"
            warn(f"{self.path.parent}: taking over the lock of pid {pid} on {other} ({why})")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __exit__(self, *exc) -> None:
        if self._held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


