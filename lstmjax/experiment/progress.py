"""Progress reporting for a run: a rich progress bar per trial on a terminal, plain periodic lines
otherwise (logs, CI), or nothing."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["make_reporter", "Reporter", "PlainReporter", "RichReporter"]


class Reporter:
    """Silent reporter; the base of the others. Steps are optimiser steps."""

    def start_trial(self, index: int, count: int, name: str, total: int, seeds: int) -> None:
        pass

    def update(self, step: int, loss: float, solved: int, diverged: int) -> None:
        pass

    def end_trial(self, step: int, loss: float, solved: int, diverged: int, note: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def position_label(index: int, count: int) -> str:
    """``[3/20]``; ``[probe 3]`` when the count is not known in advance (``count=0``: a gap
    frontier decides its probes as it goes)."""
    return f"[{index + 1}/{count}]" if count else f"[probe {index + 1}]"


class PlainReporter(Reporter):
    """One line when a trial starts, every ``every_s`` seconds, and when it ends."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = 0.0
        self._t0 = 0.0
        self._label = ""
        self._total = 1
        self._seeds = 1

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start_trial(self, index, count, name, total, seeds):
        self._label = f"{position_label(index, count)} {name}"
        self._total, self._seeds = total, seeds
        self._t0 = self._last = time.monotonic()
        self._print(f"{self._label}: {seeds} seeds x {total} steps")

    def _status(self, step, loss, solved, diverged) -> str:
        text = (
            f"{self._label}: step {step}/{self._total} loss {loss:.4g} "
            f"solved {solved}/{self._seeds}"
        )
        return text + (f" diverged {diverged}" if diverged else "")

    def update(self, step, loss, solved, diverged):
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self._t0
        eta = elapsed / max(step, 1) * (self._total - step)
        self._print(f"{self._status(step, loss, solved, diverged)} eta {eta:.0f}s")

    def end_trial(self, step, loss, solved, diverged, note):
        elapsed = time.monotonic() - self._t0
        self._print(f"{self._status(step, loss, solved, diverged)} done in {elapsed:.1f}s{note}")

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
        self._seeds = 1

    def start_trial(self, index, count, name, total, seeds):
        self._seeds = seeds
        self._task = self._progress.add_task(
            f"{position_label(index, count)} {name}", total=total, loss="-", solved=f"0/{seeds}"
        )

    def _fields(self, loss, solved, diverged):
        text = f"{solved}/{self._seeds}" + (f" ({diverged} diverged)" if diverged else "")
        return {"loss": f"{loss:.4g}", "solved": text}

    def update(self, step, loss, solved, diverged):
        self._progress.update(self._task, completed=step, **self._fields(loss, solved, diverged))

    def end_trial(self, step, loss, solved, diverged, note):
        total = self._progress.tasks[-1].total
        self._progress.update(self._task, completed=total, **self._fields(loss, solved, diverged))

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
