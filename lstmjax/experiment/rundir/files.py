"""The files of a run directory: configs (YAML, and the comparison that guards a resume), the
checks and the plan made before anything is written, one JSONL reader and writer (metrics,
diagnostics), summaries and failures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lstmjax._io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from lstmjax._plugins import PluginError, import_modules
from lstmjax.experiment.config import dump_yaml, from_dict, to_dict
from lstmjax.experiment.errors import ConfigError, format_validation_error, one_line
from lstmjax.experiment.rundir.layout import (
    CONFIG_FILE,
    FAILED_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    WANDB_DIR,
    DamagedFile,
    RunError,
    TrialState,
    warn,
)
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import SummaryError, TrialSummary

__all__ = [
    "read_yaml", "write_config", "check_same_config", "raised_budget", "stored_steps",
    "load_run_config", "check_no_links",
    "plan_run", "plan_trials", "prepare", "write_jsonl", "read_jsonl", "write_metrics",
    "read_metrics", "write_diagnostics", "read_diagnostics", "read_finished", "write_summary",
    "read_summary", "write_failure", "read_failure", "clear_failure",
]  # fmt: skip


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


def check_same_config(stored: dict, current: dict, path: Path) -> int | None:
    """Refuse to resume with a different experiment (output settings may differ) -- except a
    raised budget: when the only difference is a larger ``train.steps``, returns the stored
    steps (the run continues its unfinished seeds to the new budget, see
    :func:`raised_budget`); otherwise None."""
    stored = _normalised(stored)
    raised = raised_budget(stored, current, path)
    if raised is not None:
        return raised
    for section in ("name", "task", "model", "train", "sweep"):
        if stored.get(section) != current.get(section):
            diff = _first_difference(stored.get(section), current.get(section), section)
            raise RunError(
                f"{path}: the run was made with a different config ({diff}); "
                "use another --out to start a new run"
            )
    return None


def raised_budget(stored: dict, current: dict, path: Path) -> int | None:
    """The stored ``train.steps`` when ``current`` differs from the (normalised) ``stored``
    config only by a larger ``train.steps``; None when they differ otherwise (or not at all).

    A raised budget continues a trial from its last checkpoint, which equals a run made with
    the larger budget from the start only if the steps so far would have been the same:
    refused (one line) when the schedule depends on ``train.steps`` (``cosine``) or when the
    stored budget ended inside a chunk (not a multiple of ``train.eval_every``)."""
    st, cu = stored.get("train"), current.get("train")
    if not (isinstance(st, dict) and isinstance(cu, dict)):
        return None
    old, new = st.get("steps"), cu.get("steps")
    if not (isinstance(old, int) and isinstance(new, int) and new > old):
        return None
    if any(stored.get(k) != current.get(k) for k in ("name", "task", "model", "sweep")):
        return None
    if {k: v for k, v in st.items() if k != "steps"} != {k: v for k, v in cu.items()
                                                          if k != "steps"}:
        return None
    if cu.get("schedule") == "cosine":
        raise RunError(
            f"{path}: train.steps raised from {old} to {new}, but the cosine schedule decays "
            f"over train.steps, so the steps trained so far differ from a run made with {new}; "
            "use another --out to start a new run"
        )
    if old % cu.get("eval_every", 1):
        raise RunError(
            f"{path}: train.steps raised from {old} to {new}, but {old} is not a multiple of "
            f"train.eval_every ({cu.get('eval_every')}), so its last chunk ran past the budget "
            "with updates masked; use another --out to start a new run"
        )
    return old


def stored_steps(trial_dir: Path) -> int | None:
    """``train.steps`` of the config stored in a trial's directory (None: none readable)."""
    try:
        train = read_yaml(Path(trial_dir) / CONFIG_FILE).get("train")
    except (OSError, DamagedFile):
        return None
    steps = train.get("steps") if isinstance(train, dict) else None
    return steps if isinstance(steps, int) else None


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
        from lstmjax.experiment.validate import fields_at

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


def plan_run(run_dir: Path, cfg: ExperimentConfig, trials, resume: bool
             ) -> dict[str, TrialState]:
    """Every check of a run's directory, before anything is written; returns ``{trial name:
    TrialState}``. Raises :class:`RunError`, one line."""
    _check_creatable(run_dir)
    occupied = run_dir.is_dir() and any(not p.name.startswith(LOCK_FILE) for p in run_dir.iterdir())
    plan = {t.name: TrialState.NEW for t in trials}
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


def plan_trials(run_dir: Path, trials) -> dict[str, TrialState]:
    """Per trial of a resumed run: ``NEW`` (no directory), ``RESTART`` (no or damaged config),
    ``RESUME``, ``FINISHED`` or ``EXTEND`` (made with fewer ``train.steps``); raises if a
    trial's stored config differs otherwise."""
    plan = {}
    for trial in trials:
        tdir = run_dir / trial.name
        plan[trial.name] = TrialState.NEW
        if not tdir.exists() and not tdir.is_symlink():
            continue
        if tdir.is_symlink():
            raise RunError(f"{tdir}: is a symbolic link inside the run directory; lstmjax does "
                           "not write through links (replace it by the directory itself)")
        if not tdir.is_dir():
            raise RunError(f"{tdir}: exists and is not a directory; nothing was changed")
        tconfig = tdir / CONFIG_FILE
        if not tconfig.exists():
            plan[trial.name] = TrialState.RESTART  # killed before its config was written
            continue
        try:
            stored = read_yaml(tconfig)
        except DamagedFile as e:
            warn(f"{e}; the trial will be trained again from the start")
            plan[trial.name] = TrialState.RESTART
            continue
        if check_same_config(stored, to_dict(trial.cfg), tconfig) is not None:
            plan[trial.name] = TrialState.EXTEND  # (its summary, if any, is replaced)
            continue
        plan[trial.name] = TrialState.RESUME
        if (tdir / SUMMARY_FILE).exists():
            try:
                read_finished(tdir)
                plan[trial.name] = TrialState.FINISHED
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


# ---- metrics and summaries -------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[dict]) -> None:
    """Replace ``path`` by one JSON object per line (non-finite numbers refused)."""
    atomic_write_text(path, "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))


def read_jsonl(path: str | os.PathLike, *, strict: bool = True, keys: tuple[str, ...] = ("step",)
               ) -> list[dict]:
    """The lines of a JSONL file of the run directory ([] if it does not exist), each a JSON
    object with an integer ``step`` and the other ``keys``.

    A line that is not one is damage: ``strict`` raises :class:`DamagedFile`; otherwise the
    lines before it are returned, with a warning.
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
            ok = (isinstance(item, dict) and isinstance(item.get("step"), int)
                  and all(k in item for k in keys))
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


def write_metrics(path: Path, lines: list[dict]) -> None:
    write_jsonl(path, lines)


def read_metrics(path: str | os.PathLike, *, strict: bool = True) -> list[dict]:
    """The lines of a ``metrics.jsonl`` file ([] if it does not exist).

    A line that is not a JSON object with ``step`` and ``seed`` is damage: ``strict`` raises
    :class:`DamagedFile`; otherwise the lines before it are returned, with a warning.
    """
    return read_jsonl(path, strict=strict, keys=("step", "seed"))


def write_diagnostics(path: Path, lines: list[dict]) -> None:
    write_jsonl(path, lines)


def read_diagnostics(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """The lines of a ``diagnostics.jsonl`` ([] if absent). Damaged lines end the read (with a
    warning; ``strict`` raises :class:`DamagedFile`)."""
    return read_jsonl(path, strict=strict)


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


