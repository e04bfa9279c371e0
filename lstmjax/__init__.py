"""lstmjax: pure-function recurrent cells, a fast scan engine, long-gap tasks and experiments.

Submodules are imported lazily so `import lstmjax` stays cheap (no matplotlib,
orbax or torch until they are used)::

    import lstmjax as lj
    cell = lj.cells.make("lstm", hidden_size=64)
    ys, carry = lj.scan(cell, params, xs_BTD)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "cells", "init", "tasks", "interop", "train", "experiment", "rnn", "fast", "diagnostics",
)
_FROM_RNN = ("scan", "RNN")

__all__ = [*_SUBMODULES, *_FROM_RNN, "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"lstmjax.{name}")
    if name in _FROM_RNN:
        return getattr(importlib.import_module("lstmjax.rnn"), name)
    raise AttributeError(f"module 'lstmjax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
