"""The run directory's layout, and reading and writing what is in it -- safely.

    RUN_DIR/
      config.yaml              the resolved experiment config (sweep included)
      .lstmjax.lock            while a run is writing: its process (pid, host, start, token)
      <trial>/config.yaml      the trial's own config (no sweep)
      <trial>/metrics.jsonl    one line per (evaluation, active seed)
      <trial>/checkpoints/     orbax checkpoints of the vmapped train state, by step
      <trial>/checksums.json   SHA-256 of every file of every checkpoint, by step
      <trial>/diagnostics.jsonl  gradient flow and gate statistics (with `diagnostics:`)
      <trial>/summary.json     the trial's TrialSummary; its presence marks the trial finished
      results.csv, report.md, plots/   written by lstmjax.experiment.report
      tensorboard/<trial>/seed-<s>/, wandb/   with output.loggers (lstmjax.experiment.loggers)
      optuna.db                the study of a `sweep.method: optuna` search (SQLite;
                               lstmjax.experiment.search)

The runner (training) and the report (tables, plots) both go through this module; neither
imports the other. Rules that keep a run directory intact, whatever the user points at:

* every file is replaced atomically (:mod:`lstmjax._io`), with the umask's permissions;
* nothing is written before every check has passed (:func:`plan_run`): a directory that is not
  a run directory is never resumed into, and a resume whose config differs from what the
  directory (or any of its trials) stores is refused;
* nothing is written or deleted through a symbolic link inside the run directory;
* only files the run creates are ever deleted (its own temporaries and orbax checkpoints);
* one process at a time (:class:`RunLock`); a stale lock of a dead process is taken over.
"""

from __future__ import annotations

import datetime
import errno
import gc
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lstmjax._io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from lstmjax._plugins import PluginError, import_modules
from lstmjax.experiment.config import dump_yaml, from_dict, to_dict
from lstmjax.experiment.errors import ConfigError, format_validation_error, one_line
from lstmjax.experiment.schema import ExperimentConfig, fields_at
from lstmjax.experiment.summary import SummaryError, TrialSummary

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "DIAGNOSTICS_FILE", "SUMMARY_FILE", "CHECKPOINT_DIR",
    "CHECKSUM_FILE",
    "RESULTS_FILE", "REPORT_FILE", "PLOTS_DIR", "LOCK_FILE", "WANDB_DIR", "RUN_FILES",
    "TRIAL_FILES", "FAILED_FILE",
    "RunError", "DamagedFile", "Checkpointer", "RunLock", "run_dir_for", "read_yaml",
    "write_config", "check_same_config", "check_no_links", "plan_run", "plan_trials",
    "read_metrics",
    "write_metrics", "read_summary", "read_finished", "write_summary", "load_run_config", "warn",
    "write_failure", "read_failure", "clear_failure",
]  # fmt: skip

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CHECKSUM_FILE = "checksums.json"
DIAGNOSTICS_FILE = "diagnostics.jsonl"
RESULTS_FILE = "results.csv"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
LOCK_FILE = ".lstmjax.lock"
FAILED_FILE = "failed.json"  # a trial whose training raised: the error, until it is retried
WANDB_DIR = "wandb"  # the wandb logger's offline runs (lstmjax.experiment.loggers)
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, REPORT_FILE)  # atomically written at the top level
TRIAL_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKSUM_FILE, DIAGNOSTICS_FILE,
               FAILED_FILE)


class RunError(ConfigError):
    """A problem with the run directory (exists, or differs from the config being resumed)."""


class DamagedFile(RunError):
    """A file of the run directory that cannot be read as what it should hold."""


def warn(message: str) -> None:
    """A one-line warning on stderr (shown whatever the progress display)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run_dir_for(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None) -> Path:
    """``out_dir`` if given, else ``<output.dir>/<name>`` (a leading ``~`` is the home)."""
    if out_dir is not None:
        return Path(os.path.expanduser(os.fspath(out_dir)))
    return Path(os.path.expanduser(cfg.output.dir)) / cfg.name


# ---- configs ---------------------------------------------------------------------------------


def read_yaml(path: Path) -> dict:
    """A YAML mapping from a file of the run directory; :class:`DamagedFile` if it is not one."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = one_line(e).split(" in \"")[0][:120]
        raise DamagedFile(f"{path}: damaged ({type(e).__name__}: {reason})") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"{path}: damaged (expected a mapping, got {type(data).__name__})")
    return data


def write_config(path: Path, resolved: dict) -> None:
    atomic_write_text(path, dump_yaml(resolved))


def _normalised(stored: dict) -> dict:
    """A stored config with today's defaults filled in (so a key added since it was written does
    not count as a difference); the stored dict itself if it no longer validates."""
    try:
        return to_dict(ExperimentConfig.model_validate(stored))
    except Exception:  # noqa: BLE001 -- then compare the raw dict, key by key
        return stored


def check_same_config(stored: dict, current: dict, path: Path) -> None:
    """Refuse to resume with a different experiment (output settings may differ)."""
    stored = _normalised(stored)
    for section in ("name", "task", "model", "train", "sweep"):
        if stored.get(section) != current.get(section):
            diff = _first_difference(stored.get(section), current.get(section), section)
            raise RunError(
                f"{path}: the run was made with a different config ({diff}); "
                "use another --out to start a new run"
            )


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return f"{path}: stored {a!r}, now {b!r}"


def load_run_config(run_dir: str | os.PathLike, *, registered: bool = True) -> ExperimentConfig:
    """The resolved config stored in a run directory, validated as a new one would be (its
    cells and tasks must be registered: its recorded ``imports`` are imported first).

    ``registered=False`` is for reading a run (reports, results): the stored config is checked
    against the schema only, so a run made with a cell or task this process does not know can
    still be read; its recorded imports are tried, and one that fails is a warning."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    if not registered:
        return _read_only_config(path)
    try:
        return from_dict(read_yaml(path))
    except DamagedFile:
        raise
    except ConfigError as e:
        if "unknown cell" in str(e) or "unknown task" in str(e) or str(e).startswith("imports:"):
            # a healthy config naming a cell or task this process has not registered
            raise RunError(f"{path}: {e}") from None
        raise DamagedFile(f"{path}: damaged ({e})") from None


def _read_only_config(path: Path) -> ExperimentConfig:
    raw = read_yaml(path)
    imports = raw.get("imports") if isinstance(raw, dict) else None
    if isinstance(imports, list):
        try:
            import_modules(imports)
        except PluginError as e:
            warn(f"{path}: {e}; the run is read without it")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        message = format_validation_error(e.errors()[0], fields_at)
        raise DamagedFile(f"{path}: damaged ({message})") from None


# ---- safety checks before anything is written --------------------------------------------------


def check_no_links(run_dir: Path) -> None:
    """Refuse a run directory that holds a symbolic link anywhere inside it -- except inside
    ``wandb/``, which the wandb package writes (its logs link to its cache) and lstmjax never
    writes into."""
    if not run_dir.is_dir():
        return
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                raise RunError(
                    f"{p}: is a symbolic link inside the run directory; lstmjax does not write "
                    "through links (replace it by the directory or file itself)"
                )
        if Path(root) == run_dir and WANDB_DIR in dirs:
            dirs.remove(WANDB_DIR)


def _check_creatable(run_dir: Path) -> None:
    """The run directory is, or can become, a writable directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a directory")
    probe = run_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunError(f"{run_dir}: cannot create the run directory ({probe} is not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunError(
            f"{run_dir}: cannot write there ({probe} is not writable); choose another --out"
        )


def plan_run(run_dir: Path, cfg: ExperimentConfig, trials, resume: bool) -> dict[str, str]:
    """Every check of a run's directory, before anything is written; returns ``{trial name:
    "new" | "resume" | "finished" | "restart"}``. Raises :class:`RunError`, one line."""
    _check_creatable(run_dir)
    occupied = run_dir.is_dir() and any(not p.name.startswith(LOCK_FILE) for p in run_dir.iterdir())
    plan = {t.name: "new" for t in trials}
    if not occupied:
        return plan
    if not resume:
        raise RunError(
            f"{run_dir}: already exists; continue it with --resume (resume=True in Python) or "
            "choose another --out (out_dir=)"
        )
    config_path = run_dir / CONFIG_FILE
    if config_path.is_symlink() or not config_path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE}); nothing was changed")
    check_no_links(run_dir)
    check_same_config(read_yaml(config_path), to_dict(cfg), config_path)
    plan.update(plan_trials(run_dir, trials))
    return plan


def plan_trials(run_dir: Path, trials) -> dict[str, str]:
    """Per trial of a resumed run: ``"new"`` (no directory), ``"restart"`` (no or damaged
    config), ``"resume"`` or ``"finished"``; raises if a trial's stored config differs."""
    plan = {}
    for trial in trials:
        tdir = run_dir / trial.name
        plan[trial.name] = "new"
        if not tdir.exists() and not tdir.is_symlink():
            continue
        if tdir.is_symlink():
            raise RunError(f"{tdir}: is a symbolic link inside the run directory; lstmjax does "
                           "not write through links (replace it by the directory itself)")
        if not tdir.is_dir():
            raise RunError(f"{tdir}: exists and is not a directory; nothing was changed")
        tconfig = tdir / CONFIG_FILE
        if not tconfig.exists():
            plan[trial.name] = "restart"  # killed before its config was written
            continue
        try:
            stored = read_yaml(tconfig)
        except DamagedFile as e:
            warn(f"{e}; the trial will be trained again from the start")
            plan[trial.name] = "restart"
            continue
        check_same_config(stored, to_dict(trial.cfg), tconfig)
        plan[trial.name] = "resume"
        if (tdir / SUMMARY_FILE).exists():
            try:
                read_finished(tdir)
                plan[trial.name] = "finished"
            except DamagedFile as e:
                warn(f"{e}; the trial is resumed from its last valid checkpoint")
    return plan


def prepare(run_dir: Path, resolved: dict) -> None:
    """Create the run directory, clear its own stale temporaries and write ``config.yaml``."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir, RUN_FILES)
        write_config(run_dir / CONFIG_FILE, resolved)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot write the run directory ({e.strerror or e})") from None


# ---- the lock ----------------------------------------------------------------------------------


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


# ---- metrics and summaries -------------------------------------------------------------------


def write_metrics(path: Path, lines: list[dict]) -> None:
    text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
    atomic_write_text(path, text)


def read_metrics(path: str | os.PathLike, *, strict: bool = True) -> list[dict]:
    """The lines of a ``metrics.jsonl`` file ([] if it does not exist).

    A line that is not a JSON object with ``step`` and ``seed`` is damage: ``strict`` raises
    :class:`DamagedFile`; otherwise the lines before it are returned, with a warning.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("utf-8", errors="replace")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        try:
            item = json.loads(line)
            ok = isinstance(item, dict) and isinstance(item.get("step"), int) and "seed" in item
        except ValueError:
            ok = False
        if not ok:
            msg = f"{path}: damaged at line {number}"
            if strict:
                raise DamagedFile(msg)
            warn(f"{msg}; the {len(out)} lines before it are kept")
            return out
        out.append(item)
    return out


def read_finished(trial_dir: Path) -> TrialSummary | None:
    """A finished trial's summary (None if unfinished); :class:`DamagedFile` if its summary or
    its metrics are damaged (then the trial is not finished: it is trained again)."""
    summary = read_summary(trial_dir / SUMMARY_FILE)
    if summary is not None:
        read_metrics(trial_dir / METRICS_FILE)
    return summary


def write_failure(trial_dir: Path, message: str) -> None:
    """Mark a trial as failed (``failed.json``: the error); kept until the trial trains again."""
    if trial_dir.is_symlink() or (trial_dir.exists() and not trial_dir.is_dir()):
        return  # not ours to write into (plan_run refuses such a run on resume)
    trial_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(trial_dir / FAILED_FILE, {"error": message})


def read_failure(trial_dir: Path) -> str | None:
    """The error a failed trial stopped with, or None."""
    try:
        data = json.loads((trial_dir / FAILED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("error", "failed")) if isinstance(data, dict) else "failed"


def clear_failure(trial_dir: Path) -> None:
    path = trial_dir / FAILED_FILE
    if path.is_file() and not path.is_symlink():
        path.unlink()


def write_summary(path: Path, summary: TrialSummary) -> None:
    atomic_write_json(path, summary.to_json())


def read_summary(path: Path) -> TrialSummary | None:
    """The trial summary at ``path``, None if the trial has not finished, :class:`DamagedFile` if
    the file is not a summary."""
    if not path.exists():
        return None
    try:
        return TrialSummary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, SummaryError) as e:  # JSONDecodeError and UnicodeDecodeError too
        raise DamagedFile(f"{path}: damaged ({one_line(e)[:120]})") from None


# ---- checkpoints -----------------------------------------------------------------------------


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
                    threading.Thread.join(t, max(0.0, deadline - time.monotonic()))
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
    import jax

    return jax.process_count() > 1


def _rank() -> int:
    import jax

    return jax.process_index()


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
