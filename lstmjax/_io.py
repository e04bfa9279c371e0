"""Atomic file writes: a reader (or a process killed at any instant) sees the old file or the new
one, never a half-written one.

Each write goes to a temporary file in the destination directory, is flushed and fsync'd, then
`os.replace`d over the destination (atomic on POSIX), and the directory entry is fsync'd. The new
file gets the mode of the file it replaces, or ``0o666`` less the process umask for a new file
(as ``open`` would), so run directories stay readable by collaborators and dashboards.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "json_safe",
    "remove_stale_temporaries",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same dir, fsync, `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as strict JSON (non-finite floats become null) to `path` atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def json_safe(obj: Any) -> Any:
    """`obj` with numpy scalars turned into Python ones and NaN/Inf into None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def remove_stale_temporaries(directory: str | os.PathLike, names) -> None:
    """Delete temp files that a killed `atomic_write_*` of one of ``names`` (file names, e.g.
    ``summary.json``) left behind in `directory` -- ``.<name>.<random>.tmp`` regular files;
    nothing else, whatever it is called."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    pattern = re.compile(
        r"\.(" + "|".join(re.escape(n) for n in names) + r")\.[A-Za-z0-9_]+\.tmp"
    )
    for p in directory.iterdir():
        if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except FileNotFoundError:
                pass


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read without changing it where /proc allows (it is process-global)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
