"""Long-gap synthetic tasks with the published definitions and success criteria.

::

    from lstmjax import tasks
    tasks.names()                                   # sorted registry names
    task = tasks.make("adding", length=100)         # frozen, hashable dataclass
    batch = task.sample(key, 32)                    # Batch(inputs, targets, mask, lengths)
    task.loss(outputs, batch); task.evaluate(outputs, batch)["solved"]
    print(tasks.format_table())                     # every task, its defaults and chance level

Every task takes the gap/length parameter ``length``; see each class for what it
sets (delay, sequence length, or string-length cap) and for the exact definition.
``digits`` and ``mnist1d`` need the optional ``data`` extra (``pip install
'lstmjax[data]'``); they evaluate on a held-out split through ``task.sample_eval``.
"""

from __future__ import annotations

import dataclasses
import difflib

from lstmjax._plugins import load_group
from lstmjax.tasks.adding import Adding1997Task, AddingTask, MultiplicationTask
from lstmjax.tasks.base import Batch, MissingExtraError, Task
from lstmjax.tasks.chomsky import (
    CycleNavigationTask,
    EvenPairsTask,
    ModularArithmeticTask,
    ParityTask,
    ReverseStringTask,
    StackManipulationTask,
)
from lstmjax.tasks.copying import CopyTask, SelectiveCopyTask, VariableCopyTask
from lstmjax.tasks.datasets import DigitsTask, Mnist1dTask
from lstmjax.tasks.lag import NoiseFreeLagTask
from lstmjax.tasks.listops import ListOpsTask
from lstmjax.tasks.reber import EmbeddedReberTask
from lstmjax.tasks.recall import AssociativeRecallTask, InductionHeadTask
from lstmjax.tasks.temporal_order import TemporalOrderTask

__all__ = [
    "Adding1997Task",
    "AddingTask",
    "AssociativeRecallTask",
    "Batch",
    "CopyTask",
    "CycleNavigationTask",
    "DigitsTask",
    "EmbeddedReberTask",
    "EvenPairsTask",
    "InductionHeadTask",
    "ListOpsTask",
    "MissingExtraError",
    "Mnist1dTask",
    "ModularArithmeticTask",
    "MultiplicationTask",
    "NoiseFreeLagTask",
    "ParityTask",
    "ReverseStringTask",
    "SelectiveCopyTask",
    "StackManipulationTask",
    "Task",
    "TemporalOrderTask",
    "VariableCopyTask",
    "describe",
    "format_table",
    "get",
    "make",
    "names",
    "register",
]

_REGISTRY: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        AddingTask,
        Adding1997Task,
        MultiplicationTask,
        TemporalOrderTask,
        CopyTask,
        VariableCopyTask,
        SelectiveCopyTask,
        NoiseFreeLagTask,
        EmbeddedReberTask,
        AssociativeRecallTask,
        InductionHeadTask,
        ParityTask,
        EvenPairsTask,
        CycleNavigationTask,
        ModularArithmeticTask,
        StackManipulationTask,
        ReverseStringTask,
        ListOpsTask,
        DigitsTask,
        Mnist1dTask,
    )
}


def register(cls: type[Task]) -> type[Task]:
    """Add a task class under its ``name`` (usable as a class decorator). It must be a frozen
    dataclass subclass of :class:`Task` with a ``length`` field (the gap) and a
    ``solved_threshold`` field. Other packages register theirs through the entry-point group
    ``lstmjax.tasks`` (:mod:`lstmjax._plugins`) or a config's ``imports:``."""
    if not (isinstance(cls, type) and issubclass(cls, Task) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"tasks.register: {cls!r} is not a dataclass subclass of "
                         "lstmjax.tasks.Task")
    fields = {f.name for f in dataclasses.fields(cls)}
    missing = [f for f in ("length", "solved_threshold") if f not in fields]
    if missing:
        raise ValueError(f"tasks.register: {cls.__name__} has no field {missing[0]!r} (every "
                         "task takes length, the gap, and solved_threshold)")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"tasks.register: {cls.__name__}.name must be a non-empty string")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    """Sorted names of the registered tasks (entry-point plugins included)."""
    load_group("lstmjax.tasks")
    return sorted(_REGISTRY)


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def get(name: str) -> type[Task]:
    """The task class registered under ``name``."""
    if name not in _REGISTRY:
        load_group("lstmjax.tasks")
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown task {name!r}; {_did_you_mean(str(name), _REGISTRY)}"
            f"valid tasks: {', '.join(names())}"
        )
    return _REGISTRY[name]


def parameters(name: str) -> dict:
    """Parameter names of task ``name`` with their defaults."""
    return {f.name: f.default for f in dataclasses.fields(get(name))}


def make(name: str, **params) -> Task:
    """Construct task ``name``; unknown names/parameters and bad values raise ValueError."""
    valid = parameters(name)
    for key in params:
        if key not in valid:
            raise ValueError(
                f"{name}: unknown parameter {key!r}; {_did_you_mean(key, valid)}"
                f"valid parameters: {', '.join(valid)}"
            )
    return get(name)(**params)


def describe() -> list[dict]:
    """One dict per task: name, params (defaults), chance_loss at the defaults,
    loss_type, input/output size and seq_len at the defaults, source, summary."""
    rows = []
    for name in names():
        try:
            task = make(name)
        except MissingExtraError as e:  # listed all the same, without the numbers
            rows.append(_unavailable_row(name, str(e)))
            continue
        rows.append(
            {
                "name": name,
                "params": parameters(name),
                "chance_loss": float(task.chance_loss),
                "loss_type": task.loss_type,
                "input_size": task.input_size,
                "output_size": task.output_size,
                "seq_len": task.seq_len,
                "source": task.source,
                "summary": _summary(type(task)),
            }
        )
    return rows


def _summary(cls) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _unavailable_row(name: str, why: str) -> dict:
    cls = get(name)
    return {
        "name": name,
        "params": parameters(name),
        "chance_loss": float("nan"),
        "loss_type": cls.loss_type,
        "input_size": None,
        "output_size": None,
        "seq_len": None,
        "source": cls.source,
        "summary": f"{_summary(cls)} [unavailable: {why.split(': ', 1)[-1]}]",
    }


def format_table(rows: list[dict] | None = None) -> str:
    """``describe()`` (or the given rows) as a plain-text table."""
    rows = describe() if rows is None else rows
    header = ("task", "loss", "chance", "parameters (defaults)", "source")
    lines = [
        (
            r["name"],
            r["loss_type"],
            f"{r['chance_loss']:.4g}",
            ", ".join(f"{k}={v}" for k, v in r["params"].items()),
            r["source"],
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(line.rstrip() for line in out)
