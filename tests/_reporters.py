"""Test-only progress reporters shared by several test files."""

from __future__ import annotations

from lstmjax.experiment.progress import Reporter


class InterruptAfter(Reporter):
    """Raises KeyboardInterrupt at the n-th progress update: after that chunk's metrics were
    computed (and sent to the loggers) but before its checkpoint -- an interruption between
    checkpoints."""

    def __init__(self, n: int):
        self.n = n

    def update(self, *args):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
