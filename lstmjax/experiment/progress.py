"""Progress reporting for a run: a rich progress bar per trial on a terminal, plain periodic lines
otherwise (logs, CI), or nothing.

Trials may train concurrently (one per device, :mod:`lstmjax.experiment.schedule`): the runner
opens one :class:`TrialProgress` per running trial with :meth:`Reporter.open` and reports
through it. A reporter that implements only the single-trial methods (``start_trial``,
``update``, ``end_trial``) keeps working: :meth:`Reporter.open` routes to them, serialised.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["make_reporter", "Reporter", "PlainReporter", "RichReporter", "TrialProgress",
           "Compiling"]


class TrialProgress:
    """One running trial's progress: ``update`` after each chunk, ``end`` when it finishes."""

    def __init__(self, reporter: Reporter, state=None):
        self._reporter = reporter
        self._state = state

    def update(self, step: int, loss: float, solved: int, diverged: int) -> None:
        with self._reporter._lock:
            self._reporter._update(self._state, step, loss, solved, diverged)

    def end(self, step: int, loss: float, solved: int, diverged: int, note: str = "") -> None:
        with self._reporter._lock:
            self._reporter._clock.stop()
            self._reporter._end(self._state, step, loss, solved, diverged, note)


class Compiling:
    """``with reporter.compiling(label) as c:`` one job's programs compiling; set ``c.seconds``
    to the time measured (else the time in the block is shown)."""

    def __init__(self, reporter: Reporter, label: str):
        self.reporter, self.label = reporter, label
        self.seconds: float | None = None
        self._state = None

    def __enter__(self) -> Compiling:
        self._t0 = time.monotonic()
        with self.reporter._lock:
            self._state = self.reporter._compile_start(self.label)
        return self

    def __exit__(self, kind, *_) -> None:
        seconds = time.monotonic() - self._t0 if self.seconds is None else self.seconds
        with self.reporter._lock:
            self.reporter._compile_end(self._state, self.label, seconds, kind is None)


class _Clock:
    """Wall time during which at least one trial was training (open to end), summed."""

    def __init__(self):
        self.active, self.since, self.total = 0, 0.0, 0.0

    def start(self) -> None:
        if self.active == 0:
            self.since = time.monotonic()
        self.active += 1

    def stop(self) -> None:
        if self.active > 0:
            self.active -= 1
            if self.active == 0:
                self.total += time.monotonic() - self.since

    def seconds(self) -> float:
        return self.total + (time.monotonic() - self.since if self.active else 0.0)


class Reporter:
    """Silent reporter; the base of the others. Steps are optimiser steps.

    Subclasses either override the single-trial methods (``start_trial``/``update``/
    ``end_trial``: trials are then reported one call at a time, serialised by a lock) or the
    per-trial ones (``_open``/``_update``/``_end``, which get the state ``_open`` returned),
    and ``message`` (a line of text). Callers use :meth:`open`, :meth:`sweep` and
    :meth:`note`, which take the lock and call those.
    """

    @property
    def _lock(self) -> threading.RLock:
        lock = self.__dict__.get("_lock_")
        if lock is None:
            lock = self.__dict__.setdefault("_lock_", threading.RLock())
        return lock

    @property
    def _clock(self) -> _Clock:
        clock = self.__dict__.get("_clock_")
        if clock is None:
            clock = self.__dict__.setdefault("_clock_", _Clock())
        return clock

    @property
    def training_s(self) -> float:
        """Wall-clock seconds during which at least one trial was training (from its
        :meth:`open` to its end), whatever the display."""
        with self._lock:
            return self._clock.seconds()

    def open(self, index: int, count: int, name: str, total: int, seeds: int,
             where: str = "") -> TrialProgress:
        """Start reporting a trial (``where``: its device, when several are in use)."""
        with self._lock:
            self._clock.start()
            return TrialProgress(self, self._open(index, count, name, total, seeds, where))

    def compiling(self, label: str) -> Compiling:
        """A job's programs compiling (a context manager, thread-safe): shown as ``compiling
        <label> ... 4.1 s`` once done (a rich display shows it while it compiles)."""
        return Compiling(self, label)

    def _compile_start(self, label):
        pass

    def _compile_end(self, state, label, seconds, ok):
        if ok:
            self.message(f"compiling {label} ... {seconds:.1f} s")

    def _open(self, index, count, name, total, seeds, where):
        self.start_trial(index, count, name, total, seeds)

    def _update(self, state, step, loss, solved, diverged):
        self.update(step, loss, solved, diverged)

    def _end(self, state, step, loss, solved, diverged, note):
        self.end_trial(step, loss, solved, diverged, note)

    def sweep(self, finished: int, total: int, elapsed_s: float) -> None:
        """After a trial ends: ``finished`` of ``total`` trials are done (``total`` 0 when not
        known in advance, as in a frontier search)."""
        with self._lock:
            self._sweep(finished, total, elapsed_s)

    def _sweep(self, finished, total, elapsed_s):
        pass

    def start_trial(self, index: int, count: int, name: str, total: int, seeds: int) -> None:
        pass

    def update(self, step: int, loss: float, solved: int, diverged: int) -> None:
        pass

    def end_trial(self, step: int, loss: float, solved: int, diverged: int, note: str) -> None:
        pass

    def message(self, text: str) -> None:
        """Show a line of text (what subclasses override; callers use :meth:`note`)."""

    def close(self) -> None:
        pass

    def note(self, text: str) -> None:
        """Show a line of text between the trials' progress (thread-safe): what the executor
        and the searches call; it calls :meth:`message`, which reporters implement."""
        with self._lock:
            self.message(text)

    _message = note  # the former name of note (deprecated)


def position_label(index: int, count: int) -> str:
    """``[3/20]``; ``[probe 3]`` when the count is not known in advance (``count=0``: a gap
    frontier decides its probes as it goes)."""
    return f"[{index + 1}/{count}]" if count else f"[probe {index + 1}]"


class _PlainTrial:
    """What :class:`PlainReporter` keeps per running trial."""

    def __init__(self, label: str, total: int, seeds: int):
        self.label, self.total, self.seeds = label, total, seeds
        self.t0 = self.last = time.monotonic()


class PlainReporter(Reporter):
    """One line when a trial starts, every ``every_s`` seconds, and when it ends; with several
    trials running, each line names its trial (and device), and the sweep's progress and ETA
    follow each trial's end."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._current: _PlainTrial | None = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _open(self, index, count, name, total, seeds, where):
        label = f"{position_label(index, count)} {name}" + (f" on {where}" if where else "")
        state = _PlainTrial(label, total, seeds)
        self._print(f"{label}: {seeds} seeds x {total} steps")
        return state

    @staticmethod
    def _status(t: _PlainTrial, step, loss, solved, diverged) -> str:
        text = f"{t.label}: step {step}/{t.total} loss {loss:.4g} solved {solved}/{t.seeds}"
        return text + (f" diverged {diverged}" if diverged else "")

    def _update(self, t, step, loss, solved, diverged):
        now = time.monotonic()
        if now - t.last < self.every_s:
            return
        t.last = now
        eta = (now - t.t0) / max(step, 1) * (t.total - step)
        self._print(f"{self._status(t, step, loss, solved, diverged)} eta {eta:.0f}s")

    def _end(self, t, step, loss, solved, diverged, note):
        elapsed = time.monotonic() - t.t0
        self._print(f"{self._status(t, step, loss, solved, diverged)} done in {elapsed:.1f}s{note}")

    def _sweep(self, finished, total, elapsed_s):
        if total and finished < total:
            eta = elapsed_s / max(finished, 1) * (total - finished)
            self._print(f"sweep: {finished}/{total} trials done in {elapsed_s:.0f}s, "
                        f"eta {eta:.0f}s")

    # single-trial API (direct callers)
    def start_trial(self, index, count, name, total, seeds):
        self._current = self._open(index, count, name, total, seeds, "")

    def update(self, step, loss, solved, diverged):
        if self._current is not None:
            self._update(self._current, step, loss, solved, diverged)

    def end_trial(self, step, loss, solved, diverged, note):
        if self._current is not None:
            self._end(self._current, step, loss, solved, diverged, note)

    def message(self, text):
        self._print(text)


class RichReporter(Reporter):
    """A rich progress bar per trial: step, loss, solved seeds, ETA."""

    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("solved {task.fields[solved]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream or sys.stderr),
        )
        self._progress.start()
        self._task = None

    def _open(self, index, count, name, total, seeds, where):
        label = f"{position_label(index, count)} {name}" + (f" on {where}" if where else "")
        task = self._progress.add_task(label, total=total, loss="-", solved=f"0/{seeds}")
        return (task, seeds, total)

    @staticmethod
    def _fields(seeds, loss, solved, diverged):
        text = f"{solved}/{seeds}" + (f" ({diverged} diverged)" if diverged else "")
        return {"loss": f"{loss:.4g}", "solved": text}

    def _update(self, t, step, loss, solved, diverged):
        task, seeds, _ = t
        self._progress.update(task, completed=step, **self._fields(seeds, loss, solved, diverged))

    def _end(self, t, step, loss, solved, diverged, note):
        task, seeds, total = t
        self._progress.update(task, completed=total, **self._fields(seeds, loss, solved, diverged))

    def _compile_start(self, label):
        return self._progress.add_task(f"compiling {label} ...", total=None, loss="-",
                                       solved="-")

    def _compile_end(self, task, label, seconds, ok):
        self._progress.remove_task(task)
        super()._compile_end(task, label, seconds, ok)

    def _sweep(self, finished, total, elapsed_s):
        if total and finished < total:
            eta = elapsed_s / max(finished, 1) * (total - finished)
            self._progress.console.print(
                f"sweep: {finished}/{total} trials done, eta {eta:.0f}s", highlight=False)

    # single-trial API (direct callers)
    def start_trial(self, index, count, name, total, seeds):
        self._task = self._open(index, count, name, total, seeds, "")

    def update(self, step, loss, solved, diverged):
        if self._task is not None:
            self._update(self._task, step, loss, solved, diverged)

    def end_trial(self, step, loss, solved, diverged, note):
        if self._task is not None:
            self._end(self._task, step, loss, solved, diverged, note)

    def message(self, text):
        self._progress.console.print(text, markup=False, highlight=False)

    def close(self):
        self._progress.stop()


def make_reporter(mode: str = "auto", stream: TextIO | None = None) -> Reporter:
    """``auto``: rich on a terminal, plain lines otherwise; or ``rich``/``plain``/``none``."""
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if getattr(stream, "isatty", lambda: False)() else "plain"
    if mode == "rich":
        return RichReporter(stream)
    if mode == "plain":
        return PlainReporter(stream)
    if mode == "none":
        return Reporter()
    raise ValueError(f"progress: unknown mode {mode!r}; choose auto, rich, plain or none")
