"""Orbax checkpoints of a trial's train state, with SHA-256 checksums of their files; a failed
save (a full disk) is one OSError, orbax's duplicate reports of it contained."""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from lstmjax._io import atomic_write_json
from lstmjax.experiment.rundir.layout import CHECKSUM_FILE, warn

__all__ = ["Checkpointer"]


class Checkpointer:
    """Orbax checkpoints of a train-state pytree, one directory per step, each with SHA-256
    checksums of its files (``checksums.json`` beside the ``checkpoints/`` directory).

    Saving is synchronous; orbax writes into a temporary directory and renames it when
    complete, so a killed process leaves either a whole checkpoint or a temporary directory
    that is deleted on the next start. :meth:`restore_latest` verifies the checksums and falls
    back to older checkpoints when the newest is damaged.
    """

    def __init__(self, directory: Path, keep: int = 1):
        self.directory = Path(directory).absolute()
        self.sums_path = self.directory.parent / CHECKSUM_FILE
        self.keep = keep
        self._manager = None

    def _mgr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob("*.orbax-checkpoint-tmp*"):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
            extra = {}
            if _several_processes():  # each process checkpoints its own trials, alone
                rank = _rank()
                extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                    primary_host=rank, active_processes={rank},
                    barrier_sync_key_prefix=f"lstmjax-{rank}")
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=self.keep, enable_async_checkpointing=False,
                    create=not extra, **extra,  # (the directory exists: made above)
                ),
            )
        return self._manager

    def latest_step(self) -> int | None:
        if not self.directory.is_dir():
            return None
        return self._mgr().latest_step()

    def steps(self) -> list[int]:
        """Saved steps, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self._mgr().all_steps(), reverse=True)

    def save(self, step: int, state) -> None:
        """Save ``state`` as ``step``. A file system refusing the write (full disk, read-only,
        ...) raises :class:`OSError` naming the checkpoint directory; orbax's own reports of
        that failure (logged tracebacks from its threads and event loops) are not printed."""
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        if _several_processes():  # host-local arrays: saved as NumPy (orbax refuses them)
            import jax

            state = jax.device_get(state)
        with _ContainedOrbaxReports():
            try:
                mgr.save(step, args=ocp.args.StandardSave(state), force=True)
                mgr.wait_until_finished()
            except Exception as e:
                error = _os_error(e, self.directory, step)
                if error is None:
                    raise
                raise error from None
        sums = {s: v for s, v in self._sums().items() if int(s) in mgr.all_steps()}
        sums[str(step)] = _digest_dir(self.directory / str(step))
        atomic_write_json(self.sums_path, sums)

    def restore(self, step: int, like):
        """The state saved at ``step``, with the structure and dtypes of ``like``."""
        import jax
        import orbax.checkpoint as ocp

        if _several_processes():  # saved as NumPy: restored so, then placed like `like`
            import numpy as np

            host = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
            state = self._mgr().restore(step, args=ocp.args.StandardRestore(host))
            return jax.tree.map(lambda x, ref: jax.device_put(x, ref.sharding), state, like)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._mgr().restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_latest(self, like) -> tuple[int | None, Any]:
        """``(step, state)`` of the newest checkpoint whose checksums match and that restores;
        ``(None, like)`` if there is none (each damaged one named in a warning)."""
        sums = self._sums()
        damaged = []
        for step in self.steps():
            path = self.directory / str(step)
            expected = sums.get(str(step))
            if expected is not None and _digest_dir(path) != expected:
                bad = sorted(k for k, v in _digest_dir(path).items() if expected.get(k) != v)
                bad += sorted(k for k in expected if not (path / k).exists())
                warn(f"{path}: checkpoint damaged ({', '.join(bad[:3]) or 'files changed'} "
                     "differ from their checksums); trying an older one")
                damaged.append(step)
                continue
            try:
                state = self.restore(step, like)
            except Exception as e:  # noqa: BLE001 -- orbax/tensorstore raise many kinds
                warn(f"{path}: checkpoint cannot be read ({type(e).__name__}); "
                     "trying an older one")
                damaged.append(step)
                continue
            self._drop(damaged)  # training from `step` will save those steps again
            return step, state
        return None, like

    def _drop(self, steps: list[int]) -> None:
        for step in steps:
            path = self.directory / str(step)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        if steps:
            self._manager = None  # re-read the remaining steps

    def _sums(self) -> dict:
        try:
            data = json.loads(self.sums_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def clear(self) -> None:
        """Delete this trial's checkpoints (orbax step directories and their temporaries, and
        the checksums) -- nothing else that may be in the directory."""
        self._manager = None
        if self.directory.is_dir():
            for p in self.directory.iterdir():
                ours = p.name.isdigit() or ".orbax-checkpoint-tmp" in p.name
                if ours and p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
        if self.sums_path.is_file():
            self.sums_path.unlink()


def _os_error(e: Exception, directory: Path, step: int) -> OSError | None:
    """A failed save's error as the :class:`OSError` it stands for (tensorstore raises
    ``ValueError("RESOURCE_EXHAUSTED: ... [os_error_code='28']")`` for a full disk); None if it
    is not a file system's refusal."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None:
        found = re.search(r"os_error_code='?(\d+)", str(e))
        code = int(found.group(1)) if found else None
    if code is None:
        return e if isinstance(e, OSError) else None
    what = f"{os.strerror(code)} (saving the checkpoint of step {step}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        what += "; free some space, then continue with --resume"
    return OSError(code, what + ")", str(directory))


class _ContainedOrbaxReports:
    """``with _ContainedOrbaxReports():`` around orbax saves. When a save fails, orbax reports
    it many times over besides raising it: each of its worker threads logs the traceback
    (absl), its abandoned asyncio tasks log theirs when collected (often only at exit), and
    tensorstore's callbacks into its closed event loops raise unraisable "Event loop is closed"
    errors -- hundreds of lines for the one error the save raises, which is what the user sees.

    Inside the block, records of the ``absl`` and ``asyncio`` loggers are held back: replayed
    as they were if every save succeeded; if one failed, the errors among them are dropped, and
    from then on (for the rest of the process) so are asyncio's reports of tasks abandoned
    inside orbax, "Event loop is closed" unraisables and "coroutine ... was never awaited"
    warnings -- nothing else. Re-entrant and thread-safe (trials save concurrently, one per
    device)."""

    _lock = threading.Lock()
    _depth = 0
    _failed = False
    _held: list = []
    _hook = None  # the unraisable hook in place before ours

    def __enter__(self) -> None:
        cls = type(self)
        self._threads = set(threading.enumerate())
        with cls._lock:
            if cls._depth == 0:
                cls._failed, cls._held = False, []
                for name in _ORBAX_LOGGERS:
                    logging.getLogger(name).addFilter(_hold)
                if sys.unraisablehook is not _drop_closed_loop:
                    cls._hook = sys.unraisablehook
                    sys.unraisablehook = _drop_closed_loop
            cls._depth += 1

    def __exit__(self, kind, error, tb) -> None:
        cls = type(self)
        if kind is not None:  # orbax's other threads fail on after the save raised: wait
            deadline = time.monotonic() + _SETTLE_S
            for t in set(threading.enumerate()) - self._threads:
                if _orbax_thread(t):  # (Thread's own join: orbax's re-raises the error)
                    try:
                        threading.Thread.join(t, max(0.0, deadline - time.monotonic()))
                    except RuntimeError:  # enumerate() lists threads still being started
                        pass
            gc.collect()  # abandoned tasks that can be collected now report here
        with cls._lock:
            cls._failed = cls._failed or kind is not None
            cls._depth -= 1
            if cls._depth > 0:
                return
            for name in _ORBAX_LOGGERS:
                logging.getLogger(name).removeFilter(_hold)
            if cls._failed:  # what orbax left behind reports later: keep those dropped
                logging.getLogger("asyncio").addFilter(_drop_abandoned_in_orbax)
                warnings.filterwarnings("ignore", r"coroutine '[^']*' was never awaited",
                                        RuntimeWarning)
            elif sys.unraisablehook is _drop_closed_loop:
                sys.unraisablehook = cls._hook
            held, cls._held = cls._held, []
            failed = cls._failed
        for record in held:
            if not (failed and record.levelno >= logging.ERROR):
                logging.getLogger(record.name).handle(record)


_ORBAX_LOGGERS = ("absl", "asyncio")
_SETTLE_S = 30.0  # at most this long for orbax's threads to end after a failed save


def _orbax_thread(t: threading.Thread) -> bool:
    """A thread of orbax's (its signalling threads) or of a closed asyncio loop's executor."""
    return type(t).__module__.startswith("orbax") or t.name.startswith("asyncio_")


def _hold(record: logging.LogRecord) -> bool:
    _ContainedOrbaxReports._held.append(record)
    return False


def _drop_abandoned_in_orbax(record: logging.LogRecord) -> bool:
    """False (drop) for asyncio's report of a task or future that failed inside orbax (raised
    through its code, or by tensorstore writing into one of its temporary directories)."""
    if not record.exc_info or record.exc_info[1] is None:
        return True
    if ".orbax-checkpoint-tmp" in str(record.exc_info[1]):
        return False
    files = [frame.filename for frame in traceback.extract_tb(record.exc_info[2])]
    return not any(f"{os.sep}orbax{os.sep}" in f for f in files)


def _drop_closed_loop(unraisable) -> None:
    if isinstance(unraisable.exc_value, RuntimeError) and \
            str(unraisable.exc_value) == "Event loop is closed":
        return
    hook = _ContainedOrbaxReports._hook or sys.__unraisablehook__
    hook(unraisable)


def _several_processes() -> bool:
    from lstmjax.experiment.hosts import rank_and_count

    return rank_and_count()[1] > 1


def _rank() -> int:
    from lstmjax.experiment.hosts import rank_and_count

    return rank_and_count()[0]


def _digest_dir(path: Path) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            h = hashlib.sha256()
            with p.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
            out[p.relative_to(path).as_posix()] = h.hexdigest()
    return dict(sorted(out.items()))
