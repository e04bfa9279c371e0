"""Which program runs where: trials grouped into jobs, jobs placed on the local devices.

* A **job** is one compiled program: a trial's seeds vmapped, or several trials that differ
  only in ``train.learning_rate`` with the learning rate vmapped alongside the seeds -- one
  compile for a whole learning-rate sweep. Each trial of a job is still written as its own
  trial directory (metrics, checkpoints, summary), as if it had trained alone; its numbers
  equal a separate program's to float tolerance (not bit for bit: XLA may compile a wider
  batch differently), and a resumed job is the same program again, so resuming reproduces
  the uninterrupted run exactly.
* A **placement** is where a job runs: one device (its arrays committed there), or several,
  the job's seed axis sharded over them (``NamedSharding`` on a 1-D mesh ``seed``) when there
  are fewer jobs than devices and the seeds divide evenly -- or, with ``train.data_parallel``,
  all of them, the state replicated and every batch sharded over a 1-D mesh ``batch`` (one job
  at a time; for models too large for one device's share of a sweep, and multi-GPU hosts).
* With one device, jobs run one after another (the next one compiling in a thread, as before);
  with several, one worker thread per device runs whole jobs concurrently -- XLA releases the
  GIL while it compiles and executes, so two small programs on two CPU devices use two cores.

The devices are the process's local devices; on CPU, ``lstmjax run`` splits the host into one
device per core at program start (:func:`lstmjax.cli.split_cpu`, sized by
:func:`default_cpu_devices`); a notebook does the same with
``jax.config.update("jax_num_cpu_devices", 2)`` before its first JAX call.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lstmjax.experiment.sweep import Trial

__all__ = ["Job", "Placement", "DEFAULT_PLACEMENT", "make_jobs", "init_key", "select_devices",
           "placements", "data_parallel_placement", "default_cpu_devices"]


@dataclasses.dataclass(frozen=True)
class Job:
    """Trials trained as one program (several only when they differ just in learning rate)."""

    trials: tuple[Trial, ...]

    @property
    def seeds(self) -> int:
        return sum(len(t.cfg.train.seeds) for t in self.trials)

    @property
    def name(self) -> str:
        return self.trials[0].name if len(self.trials) == 1 else (
            f"{self.trials[0].name} (+{len(self.trials) - 1} learning rates)")

    @property
    def label(self) -> str:
        """What the job trains, for the progress display: ``lstm (length 40)``."""
        t = self.trials[0]
        gap = t.gap_key.rsplit(".", 1)[-1]
        more = f", +{len(self.trials) - 1} learning rates" if len(self.trials) > 1 else ""
        return f"{t.variant or t.cfg.model.cell} ({gap} {t.gap}{more})"


@dataclasses.dataclass(frozen=True)
class Placement:
    """The devices a job runs on; several = its seed axis sharded over them, or, with
    ``data_parallel``, its state replicated on them and each batch sharded over them."""

    devices: tuple[Any, ...] = ()
    data_parallel: bool = False

    @property
    def label(self) -> str:
        if not self.devices:
            return ""
        return "+".join(f"{d.platform}:{d.id}" for d in self.devices) + (
            " (data parallel)" if self.data_parallel and len(self.devices) > 1 else "")

    def _mesh(self, axis: str):
        import numpy as np
        from jax.sharding import Mesh

        return Mesh(np.array(self.devices), (axis,))

    def sharding(self):
        """A sharding for the job's state (arrays with a leading seed axis), or None (the
        default device)."""
        if not self.devices:
            return None
        from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

        if len(self.devices) == 1:
            return SingleDeviceSharding(self.devices[0])
        if self.data_parallel:
            return NamedSharding(self._mesh("batch"), PartitionSpec())
        return NamedSharding(self._mesh("seed"), PartitionSpec("seed"))

    def batch_sharding(self):
        """With data parallelism over several devices: the sharding of a sampled batch
        (leading batch axis split over the mesh ``batch``); else None."""
        if not (self.data_parallel and len(self.devices) > 1):
            return None
        from jax.sharding import NamedSharding, PartitionSpec

        return NamedSharding(self._mesh("batch"), PartitionSpec("batch"))


DEFAULT_PLACEMENT = Placement()  # the default device, no explicit placement


def _lr_free_key(trial: Trial) -> str:
    """Everything about a trial except its learning rate and its name."""
    raw = trial.cfg.model_dump(mode="json")
    raw["train"].pop("learning_rate", None)
    return json.dumps(raw, sort_keys=True)


def init_key(cfg, seeds: int, input_size: int, output_size: int, where: str = "") -> str:
    """What makes two jobs' compiled initialisers one program: the model, the training settings
    but the learning rate (a runtime value), the number of ``seeds``, the task's input and
    output sizes and the placement (``where``)."""
    train = {k: v for k, v in cfg.train.model_dump(mode="json").items() if k != "learning_rate"}
    train["seeds"] = seeds
    return json.dumps([cfg.model.model_dump(mode="json"), train, input_size, output_size, where],
                      sort_keys=True)


def make_jobs(trials: list[Trial], plan: dict[str, str], batch_learning_rates: bool = True
              ) -> list[Job]:
    """Group ``trials`` into jobs, in order: trials that differ only in ``train.learning_rate``
    share one job (where ``train.batch_learning_rates`` allows it and
    ``batch_learning_rates``), whatever their state -- a resumed group trains on as the same
    program, so it reproduces the uninterrupted run bit for bit; a group whose trials are all
    finished is no job, nor is a finished trial of its own."""
    jobs: list[list[Trial]] = []
    open_groups: dict[str, list[Trial]] = {}
    for t in trials:
        if not batch_learning_rates or not t.cfg.train.batch_learning_rates:
            jobs.append([t])
            continue
        key = _lr_free_key(t)
        group = open_groups.get(key)
        if group is None:
            group = open_groups[key] = []
            jobs.append(group)
        group.append(t)
    return [Job(tuple(g)) for g in jobs if any(plan.get(t.name) != "finished" for t in g)]


def select_devices(requested: int | None) -> list:
    """The first ``requested`` local devices (all of them when None); a one-line error when
    more are asked for than exist."""
    import jax

    from lstmjax.experiment.rundir import RunError

    devices = jax.local_devices()
    if requested is None:
        return devices
    if requested < 1:
        raise RunError(f"devices: {requested} is not a device count; use 1 or more")
    if requested > len(devices):
        hint = ("`lstmjax run` splits the CPU into one device per core; in Python call "
                "jax.config.update('jax_num_cpu_devices', N) before the first JAX call"
                if devices[0].platform == "cpu" else "")
        raise RunError(f"devices: {requested} requested but this process has {len(devices)} "
                       f"{devices[0].platform} device(s)" + (f"; {hint}" if hint else ""))
    return devices[:requested]


def placements(jobs: list[Job], devices: list) -> list[Placement]:
    """Where each of ``jobs`` runs when they start together: with at least as many jobs as
    devices, one device each (assigned as devices free up -- the placement here only says
    'one device'); with fewer, the devices are shared out and a job's seeds are sharded over
    its share when they divide evenly (otherwise it keeps one device)."""
    if len(devices) <= 1 or len(jobs) >= len(devices):
        return [Placement() for _ in jobs]
    out, start = [], 0
    share = len(devices) // max(len(jobs), 1)
    for job in jobs:
        k = share
        while k > 1 and job.seeds % k:
            k -= 1
        out.append(Placement(tuple(devices[start:start + k])))
        start += share
    return out


def data_parallel_placement(trials: list[Trial], devices: list) -> Placement | None:
    """The placement of a data-parallel run (``train.data_parallel`` and several devices):
    every device, batches split over them -- or None (the ordinary schedule). A batch size
    that does not divide by the device count is a one-line error naming it."""
    from lstmjax.experiment.errors import ConfigError

    if len(devices) <= 1 or not any(t.cfg.train.data_parallel for t in trials):
        return None
    n = len(devices)
    for t in trials:
        tc = t.cfg.train
        if not tc.data_parallel:
            raise ConfigError(f"train.data_parallel: trial {t.name} sets it false while others "
                              "set it; data parallelism is one setting for the whole run")
        for key in ("batch_size", "eval_batch_size"):
            size = getattr(tc, key)
            if size % n:
                raise ConfigError(
                    f"train.{key}: {size} does not split over {n} devices for data_parallel; "
                    f"use a multiple of {n} or --devices with a divisor of {size}")
    return Placement(tuple(devices), data_parallel=True)


def default_cpu_devices() -> int:
    """One XLA:CPU device per core this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not Linux
        return max(os.cpu_count() or 1, 1)
