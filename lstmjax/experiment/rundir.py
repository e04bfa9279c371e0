"""The run directory's layout, and reading and writing what is in it.

    RUN_DIR/
      config.yaml              the resolved experiment config (sweep included)
      <trial>/config.yaml      the trial's own config (no sweep)
      <trial>/metrics.jsonl    one line per (evaluation, active seed)
      <trial>/checkpoints/     orbax checkpoints of the vmapped train state, by step
      <trial>/summary.json     the trial's TrialSummary; its presence marks the trial finished
      results.csv, report.md, plots/   written by lstmjax.experiment.report

The runner (training) and the report (tables, plots) both go through this module; neither
imports the other. Every file is replaced atomically (:mod:`lstmjax._io`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lstmjax._io import atomic_write_json, atomic_write_text
from lstmjax.experiment.config import dump_yaml, from_dict
from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.summary import TrialSummary

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "SUMMARY_FILE", "CHECKPOINT_DIR", "RESULTS_FILE",
    "REPORT_FILE", "PLOTS_DIR", "RunError", "Checkpointer", "run_dir_for", "read_yaml",
    "write_config", "check_same_config", "read_metrics", "write_metrics", "read_summary",
    "write_summary", "load_run_config",
]  # fmt: skip

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
RESULTS_FILE = "results.csv"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


class RunError(ConfigError):
    """A problem with the run directory (exists, or differs from the config being resumed)."""


def run_dir_for(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None) -> Path:
    """``out_dir`` if given, else ``<output.dir>/<name>``."""
    return Path(out_dir) if out_dir is not None else Path(cfg.output.dir) / cfg.name


# ---- configs ---------------------------------------------------------------------------------


def read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def write_config(path: Path, resolved: dict) -> None:
    atomic_write_text(path, dump_yaml(resolved))


def check_same_config(stored: dict, current: dict, path: Path) -> None:
    """Refuse to resume with a different experiment (output settings may differ)."""
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


def load_run_config(run_dir: str | os.PathLike) -> ExperimentConfig:
    """The resolved config stored in a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return from_dict(read_yaml(path))


# ---- metrics and summaries -------------------------------------------------------------------


def write_metrics(path: Path, lines: list[dict]) -> None:
    text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
    atomic_write_text(path, text)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The lines of a ``metrics.jsonl`` file ([] if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_summary(path: Path, summary: TrialSummary) -> None:
    atomic_write_json(path, summary.to_json())


def read_summary(path: Path) -> TrialSummary | None:
    """The trial summary at ``path``, or None if the trial has not finished."""
    if not path.exists():
        return None
    return TrialSummary.from_json(json.loads(path.read_text(encoding="utf-8")))


# ---- checkpoints -----------------------------------------------------------------------------


class Checkpointer:
    """Orbax checkpoints of a train-state pytree, one directory per step.

    Saving is synchronous; orbax writes into a temporary directory and renames it when
    complete, so a killed process leaves either a whole checkpoint or a temporary directory
    that is deleted on the next start.
    """

    def __init__(self, directory: Path, keep: int = 1):
        self.directory = Path(directory).absolute()
        self.keep = keep
        self._manager = None

    def _mgr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(stale, ignore_errors=True)
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=self.keep, enable_async_checkpointing=False, create=True
                ),
            )
        return self._manager

    def latest_step(self) -> int | None:
        if not self.directory.is_dir():
            return None
        return self._mgr().latest_step()

    def save(self, step: int, state) -> None:
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        mgr.save(step, args=ocp.args.StandardSave(state), force=True)
        mgr.wait_until_finished()

    def restore(self, step: int, like):
        """The state saved at ``step``, with the structure and dtypes of ``like``."""
        import jax
        import orbax.checkpoint as ocp

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._mgr().restore(step, args=ocp.args.StandardRestore(abstract))

    def clear(self) -> None:
        """Delete all checkpoints (a fresh start in a directory left by an earlier attempt)."""
        self._manager = None
        if self.directory.exists():
            shutil.rmtree(self.directory)
