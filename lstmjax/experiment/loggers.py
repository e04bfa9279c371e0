"""Loggers: the runner's metric records, also sent to TensorBoard and Weights & Biases.

    output: {loggers: [jsonl, tensorboard, wandb]}     # jsonl is always written

``metrics.jsonl`` (and ``diagnostics.jsonl``) are the source of truth, written by the runner
whatever is listed; the other loggers are :class:`Sink`\\ s fed the same records:

* ``tensorboard`` (``pip install 'lstmjax[tensorboard]'``, tensorboardX, no TensorFlow): one run
  per trial and seed, ``RUN_DIR/tensorboard/<trial>/seed-<s>/``, tags namespaced as TensorBoard
  users expect (:func:`tag`): ``train/...`` (``train/loss``, ``train/grad_norm``, ``train/lr``,
  ``train/updates``, ``train/diverged``), ``eval/...`` (``eval/loss``, ``eval/accuracy``,
  ``eval/loss_vs_chance``, ``eval/solved`` and the task's extras) and ``diag/...``, with the
  trial's hyperparameters for the HPARAMS tab: ``tensorboard --logdir RUN_DIR/tensorboard``.
* ``wandb`` (``pip install 'lstmjax[wandb]'``): one W&B run per trial (name: the trial, group:
  ``output.wandb.group`` or the experiment name), keys ``seed-<s>/<tag>``, the trial's config
  recorded. Offline unless ``output.wandb: {mode: online, project: ...}``; the offline runs are
  in ``RUN_DIR/wandb/`` (upload them with ``wandb sync RUN_DIR/wandb/offline-run-*``).

A listed logger whose package is missing is a :class:`ConfigError` before anything is written
(:func:`check_loggers`). A logger that fails during the run (disk full, network) is named in one
warning and switched off; training and metrics.jsonl go on.

Resuming (``--resume``): the sinks get only the records after the restored checkpoint's step.
Points that a killed process had logged after its last checkpoint are trained and logged again:
TensorBoard hides the old ones (the new event file starts with a purge at the first step after
the checkpoint, tensorboardX's ``purge_step``), so each step shows once; W&B gets a new run for
the trial (``resumed_from_step`` in its config) holding the steps after the checkpoint, beside
the killed process's run.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from pathlib import Path
from typing import Any

from lstmjax.experiment.config import to_dict
from lstmjax.experiment.errors import ConfigError, one_line
from lstmjax.experiment.rundir import TENSORBOARD_DIR, WANDB_DIR, warn
from lstmjax.experiment.schema import ExperimentConfig
from lstmjax.experiment.sweep import Trial, format_value

__all__ = [
    "Sink", "Loggers", "TensorBoardSink", "WandbSink", "check_loggers", "make_sinks",
    "open_run", "metric_scalars", "diagnostic_scalars", "TENSORBOARD_DIR", "WANDB_DIR",
]  # fmt: skip


# logger -> (the module it imports, the extra that installs it)
PACKAGES = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


class Sink:
    """Receives a run's records, one trial at a time. ``log`` gets one (trial, seed, step)
    record: ``scalars`` maps tag -> float. Every method may raise; :class:`Loggers` then warns
    once and stops calling this sink."""

    name = "sink"

    def open_trial(self, trial: Trial, *, resumed_from: int | None = None) -> None:
        """A trial starts (or continues after the checkpoint at step ``resumed_from``)."""

    def log(self, trial: Trial, seed: int, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def close_trial(self, trial: Trial) -> None:
        """The trial has finished; flush and release what it used."""

    def close(self) -> None:
        """The run ends (normally or not): flush and release everything."""


# metrics.jsonl keys that describe the optimisation, not the evaluation batch
TRAIN_KEYS = ("grad_norm", "lr", "updates", "diverged")


def tag(key: str) -> str:
    """The logger tag of a metrics.jsonl key: ``train_loss`` -> ``train/loss``, the other
    optimisation keys (:data:`TRAIN_KEYS`) -> ``train/<key>``, every evaluation metric ->
    ``eval/<key>``."""
    if key.startswith("train_"):
        return "train/" + key.removeprefix("train_")
    return ("train/" if key in TRAIN_KEYS else "eval/") + key


def metric_scalars(line: dict) -> dict[str, float]:
    """The numbers of one metrics.jsonl line under their tags (:func:`tag`; flags as 0/1;
    missing or non-finite values left out)."""
    return {tag(k): float(v) for k, v in line.items()
            if k not in ("step", "seed") and _finite(v)}


def diagnostic_scalars(line: dict) -> dict[str, float]:
    """A few numbers from one diagnostics.jsonl line: ``diag/log10_gain_max_lag`` (the
    gradient flow's log10 gain at the largest lag), each gate's ``mean``, ``frac_low`` and
    ``frac_high``, the keep gate's mean and the median memory time-scale τ."""
    out: dict[str, float] = {}
    flow = line.get("gradient_flow") or {}
    lag, gain = flow.get("lag") or [], flow.get("log10_gain") or []
    if lag and len(gain) == len(lag):
        g = gain[max(range(len(lag)), key=lambda i: lag[i])]
        if _finite(g):
            out["diag/log10_gain_max_lag"] = float(g)
    gates = line.get("gates") or {}
    for name, stats in (gates.get("gates") or {}).items():
        for key in ("mean", "frac_low", "frac_high"):
            if _finite(stats.get(key)):
                out[f"diag/gate_{name}_{key}"] = float(stats[key])
    keep = gates.get("keep_gate")
    if keep:
        inverted = keep.startswith("1-")
        mean = (gates.get("gates") or {}).get(keep.removeprefix("1-"), {}).get("mean")
        if _finite(mean):
            out["diag/keep_gate_mean"] = 1.0 - mean if inverted else float(mean)
    tau = (gates.get("timescale") or {}).get("median")
    if _finite(tau):
        out["diag/timescale_median"] = float(tau)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (bool, int, float)) and (not isinstance(v, float) or math.isfinite(v))


# ---- the run's sinks ---------------------------------------------------------------------------


def check_loggers(cfg: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` (one line, naming the extra) if a listed logger's package
    cannot be imported. Called before anything of the run is written."""
    for logger in cfg.output.loggers:
        if logger not in PACKAGES:
            continue
        module, extra = PACKAGES[logger]
        try:
            importlib.import_module(module)
        except ImportError as e:
            broken = "" if isinstance(e, ModuleNotFoundError) and e.name == module else (
                f", which fails to import ({type(e).__name__}: {one_line(e)[:120]})")
            raise ConfigError(
                f"output.loggers: {logger} needs the optional package {module}{broken}: "
                f"pip install 'lstmjax[{extra}]'"
            ) from None


def make_sinks(cfg: ExperimentConfig, run_dir: Path) -> list[Sink]:
    """The sinks of ``cfg.output.loggers`` (jsonl is the runner's own file, not a sink)."""
    sinks: list[Sink] = []
    for logger in cfg.output.loggers:
        if logger == "tensorboard":
            sinks.append(TensorBoardSink(cfg, run_dir))
        elif logger == "wandb":
            sinks.append(WandbSink(cfg, run_dir))
    return sinks


def open_run(cfg: ExperimentConfig, run_dir: Path) -> Loggers:
    """The :class:`Loggers` of a run (a sink that cannot even start is warned about and left
    out)."""
    try:
        sinks = make_sinks(cfg, Path(run_dir))
    except Exception as e:  # noqa: BLE001 -- a logger never stops training
        warn(f"output.loggers: cannot start ({type(e).__name__}: {one_line(e)[:200]}); "
             "the run goes on with metrics.jsonl only")
        sinks = []
    return Loggers(sinks)


class Loggers:
    """Fans the runner's records out to sinks. A sink that raises is named in one warning and
    dropped; the others, and the run, go on. Thread-safe: trials training concurrently on
    several devices log through one instance (calls are serialised)."""

    def __init__(self, sinks: list[Sink] | tuple[Sink, ...] = ()):
        import threading

        self.sinks = list(sinks)
        self._lock = threading.RLock()

    def open_trial(self, trial: Trial, *, resumed_from: int | None = None) -> None:
        for sink in list(self.sinks):
            self._call(sink, sink.open_trial, trial, resumed_from=resumed_from)

    def metrics(self, trial: Trial, lines: list[dict]) -> None:
        """metrics.jsonl lines of one evaluation (one per active seed)."""
        self._log(trial, [(line, metric_scalars(line)) for line in lines])

    def diagnostics(self, trial: Trial, lines: list[dict]) -> None:
        """diagnostics.jsonl lines of one step (one per seed)."""
        self._log(trial, [(line, diagnostic_scalars(line)) for line in lines])

    def _log(self, trial: Trial, records: list[tuple[dict, dict]]) -> None:
        for sink in list(self.sinks):
            for line, scalars in records:
                if scalars and not self._call(sink, sink.log, trial, line["seed"],
                                              line["step"], scalars):
                    break

    def close_trial(self, trial: Trial) -> None:
        for sink in list(self.sinks):
            self._call(sink, sink.close_trial, trial)

    def close(self) -> None:
        for sink in list(self.sinks):
            self._call(sink, sink.close)
        self.sinks = []

    def _call(self, sink: Sink, method, *args, **kwargs) -> bool:
        with self._lock:
            if sink not in self.sinks:  # dropped by another thread meanwhile
                return False
            try:
                method(*args, **kwargs)
                return True
            except Exception as e:  # noqa: BLE001 -- disk, network, the package's own errors
                self.sinks.remove(sink)
                warn(f"output.loggers: {sink.name} failed ({type(e).__name__}: "
                     f"{one_line(e)[:200]}); it is off for the rest of the run "
                     "(metrics.jsonl has every record)")
                try:
                    sink.close()
                except Exception:  # noqa: BLE001, S110 -- already reported once
                    pass
                return False


def _hparams(trial: Trial, seed: int) -> dict[str, Any]:
    """The trial's hyperparameters as TensorBoard's HPARAMS tab shows them: the common ones,
    every swept key, the seed."""
    cfg = trial.cfg
    out: dict[str, Any] = {
        "trial": trial.name, "variant": trial.variant, "task.name": cfg.task.name,
        "task.length": cfg.task.length, "model.cell": cfg.model.cell,
        "model.hidden_size": cfg.model.hidden_size, "model.num_layers": cfg.model.num_layers,
        "train.optimizer": cfg.train.optimizer, "train.learning_rate": cfg.train.learning_rate,
        "train.batch_size": cfg.train.batch_size, "train.steps": cfg.train.steps,
    }  # fmt: skip
    for key, value in trial.assignment.items():
        ok = isinstance(value, (str, bool, int, float))
        out[key] = value if ok else format_value(value)
    out["seed"] = seed
    return out


# metrics the HPARAMS tab shows per run (the tags of the same name)
HPARAM_METRICS = ("eval/loss", "eval/loss_vs_chance", "eval/accuracy", "eval/solved",
                  "train/loss")


class TensorBoardSink(Sink):
    """``RUN_DIR/tensorboard/<trial>/seed-<s>/`` event files through tensorboardX."""

    name = "tensorboard"

    def __init__(self, cfg: ExperimentConfig, run_dir: Path):
        from tensorboardX import SummaryWriter

        self._writer_class = SummaryWriter
        self.root = Path(run_dir) / TENSORBOARD_DIR
        # per trial (several are open at once: a learning-rate group, several devices)
        self.writers: dict[tuple[str, int], Any] = {}
        self.purge_step: dict[str, int | None] = {}

    def open_trial(self, trial: Trial, *, resumed_from: int | None = None) -> None:
        self.close_trial(trial)
        self.purge_step[trial.name] = None if resumed_from is None else resumed_from + 1

    def _writer(self, trial: Trial, seed: int):
        writer = self.writers.get((trial.name, seed))
        if writer is None:
            logdir = self.root / trial.name / f"seed-{seed}"
            fresh = not (logdir.is_dir() and any(logdir.glob("events.out.tfevents.*")))
            # TensorBoard reads a run's files in name order: the nanosecond suffix puts a
            # resumed process's file after the earlier ones even within the same second
            writer = self._writer_class(
                str(logdir), purge_step=None if fresh else self.purge_step.get(trial.name),
                flush_secs=10, filename_suffix=f".{time.time_ns()}.{os.getpid()}",
            )
            self.writers[(trial.name, seed)] = writer
            if fresh:
                from tensorboardX.summary import hparams

                for summary in hparams(_hparams(trial, seed), dict.fromkeys(HPARAM_METRICS)):
                    writer.file_writer.add_summary(summary)
        return writer

    def log(self, trial: Trial, seed: int, step: int, scalars: dict[str, float]) -> None:
        writer = self._writer(trial, seed)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)

    def close_trial(self, trial: Trial | None) -> None:
        """Close ``trial``'s writers (every trial's with None)."""
        for key in [k for k in self.writers if trial is None or k[0] == trial.name]:
            self.writers.pop(key).close()

    def close(self) -> None:
        self.close_trial(None)


class WandbSink(Sink):
    """One W&B run per trial through the ``wandb`` package, offline unless configured."""

    name = "wandb"

    def __init__(self, cfg: ExperimentConfig, run_dir: Path):
        import wandb

        self.wandb = wandb
        self.settings = cfg.output.wandb
        self.group = self.settings.group or cfg.name
        self.dir = Path(run_dir)
        self.runs: dict[str, Any] = {}  # per open trial (several at once: groups, devices)

    def open_trial(self, trial: Trial, *, resumed_from: int | None = None) -> None:
        self.close_trial(trial)
        (self.dir / WANDB_DIR).mkdir(exist_ok=True)
        tcfg = to_dict(trial.cfg)
        config = {"trial": trial.name, "variant": trial.variant, "gap": trial.gap,
                  "swept": {k: _plain(v) for k, v in trial.assignment.items()},
                  "resumed_from_step": resumed_from,
                  **{k: tcfg[k] for k in ("task", "model", "train") if k in tcfg}}
        s = self.settings
        self.runs[trial.name] = self.wandb.init(
            dir=str(self.dir), project=s.project, entity=s.entity, group=self.group,
            name=trial.name, job_type="trial", tags=list(s.tags), config=config, mode=s.mode,
            reinit="create_new",
            # console capture off (the progress display owns the terminal); no symlinks in
            # the run directory
            settings=self.wandb.Settings(console="off", silent=True, symlink=False),
        )

    def log(self, trial: Trial, seed: int, step: int, scalars: dict[str, float]) -> None:
        # one W&B step per evaluation: the seeds' records at a step are gathered (commit=False)
        self.runs[trial.name].log({f"seed-{seed}/{k}": v for k, v in scalars.items()},
                                  step=step, commit=False)

    def close_trial(self, trial: Trial | None, exit_code: int = 0) -> None:
        """Finish ``trial``'s W&B run (every open one with None)."""
        for name in [n for n in self.runs if trial is None or n == trial.name]:
            self.runs.pop(name).finish(exit_code=exit_code)

    def close(self) -> None:
        self.close_trial(None, exit_code=1)  # a trial still open: the run was interrupted


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, bool, int, float, type(None))) else format_value(value)
