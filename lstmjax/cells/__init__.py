"""Recurrent cells as pure functions, and their registry.

    >>> import lstmjax as lj
    >>> lj.cells.names()[:5]
    ['cifg', 'fgr', 'gru', 'irnn', 'lstm']
    >>> cell = lj.cells.make("peephole", hidden_size=8, peepholes=("f",))

Greff et al. 2017 ("LSTM: A Search Space Odyssey") variants are registered by
their paper names; each is *vanilla* (peepholes on every gate that exists)
minus one component: ``nig``, ``nfg``, ``nog``, ``niaf``, ``noaf``, ``np``
(= ``lstm``), ``fgr``. ``cifg`` is the plain coupled cell; Greff's CIFG, which
keeps peepholes, is ``make("cifg", hidden_size, peepholes=("i", "o"))``.

Every registered name is registered here, in one place. The classes are named as in
PyTorch and Flax (``LSTMCell``, ``GRUCell``, ...); the old names (``LSTM``, ``GRU``,
``RNN``, ``MGU``, ``MinGRU``, ``MinLSTM``, ``LRU``) still resolve, with a
``DeprecationWarning``, for one release.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

from lstmjax._plugins import load_group
from lstmjax._util import close_match, hashable
from lstmjax.cells._base import Cell
from lstmjax.cells.elman import ElmanCell
from lstmjax.cells.gru import GRUCell, MGUCell
from lstmjax.cells.indrnn import IndRNNCell
from lstmjax.cells.lstm import LSTMCell
from lstmjax.cells.normalized import LNGRUCell, LNLSTMCell
from lstmjax.cells.parallel import LRUCell, MinGRUCell, MinLSTMCell

__all__ = [
    "Cell", "ElmanCell", "LSTMCell", "GRUCell", "MGUCell", "MinGRUCell", "MinLSTMCell",
    "LRUCell", "LNLSTMCell", "LNGRUCell", "IndRNNCell", "names", "make", "register", "describe",
    "option_names", "accepts", "applicable_options", "cell_class",
]  # fmt: skip

# Old class name -> new class, kept for one release (module ``__getattr__`` below).
_DEPRECATED = {
    "RNN": ElmanCell, "LSTM": LSTMCell, "GRU": GRUCell, "MGU": MGUCell,
    "MinGRU": MinGRUCell, "MinLSTM": MinLSTMCell, "LRU": LRUCell,
}  # fmt: skip

_ALL = ("i", "f", "o")


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    preset: dict[str, Any]
    summary: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, cls: type, summary: str, **preset) -> None:
    """Add a named cell: ``make(name, H, **opts)`` is ``cls(H, **{**preset, **opts})``.
    Other packages register theirs through the entry-point group ``lstmjax.cells``
    (:mod:`lstmjax._plugins`) or a config's ``imports:``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"cell name {name!r} must be a non-empty string")
    if name in _REGISTRY:
        raise ValueError(f"cell {name!r} is already registered")
    _REGISTRY[name] = _Entry(cls, dict(preset), summary)


register("rnn", ElmanCell, "Elman RNN, h' = tanh(W_x x + W_h h + b)")
register(
    "irnn", ElmanCell, "IRNN (Le et al. 2015): relu, W_h = I, b = 0, W_x ~ N(0, 1e-3^2)",
    activation="relu", recurrent_init="identity", kernel_init="normal", bias_init="zeros",
)
register("lstm", LSTMCell, "LSTM with forget gate (Gers et al. 2000), gates i, f, g, o")
register(
    "peephole", LSTMCell, "LSTM + diagonal peepholes (Gers & Schmidhuber 2000)", peepholes=_ALL
)
register("cifg", LSTMCell, "coupled input/forget gate, f = 1 - i", coupled=True)
register("gru", GRUCell, "GRU, PyTorch/cuDNN form (reset_after=False: Cho et al. 2014)")
register("mgu", MGUCell, "minimal gated unit (Zhou et al. 2016)")
register("vanilla", LSTMCell, "Greff's vanilla LSTM: peepholes on all gates", peepholes=_ALL)
register("nig", LSTMCell, "Greff NIG: no input gate", input_gate=False, peepholes=("f", "o"))
register("nfg", LSTMCell, "Greff NFG: no forget gate", forget_gate=False, peepholes=("i", "o"))
register("nog", LSTMCell, "Greff NOG: no output gate", output_gate=False, peepholes=("i", "f"))
register(
    "niaf", LSTMCell, "Greff NIAF: no input activation", input_activation=False, peepholes=_ALL
)
register(
    "noaf", LSTMCell, "Greff NOAF: no output activation", output_activation=False, peepholes=_ALL
)
register("np", LSTMCell, "Greff NP: no peepholes (= lstm)")
register(
    "fgr", LSTMCell, "Greff FGR: full gate recurrence", full_gate_recurrence=True, peepholes=_ALL
)
register(
    "mingru", MinGRUCell, "minGRU (Feng et al. 2024): input-only gates, parallel log-space scan"
)
register(
    "minlstm", MinLSTMCell, "minLSTM (Feng et al. 2024): normalised f/i, parallel log-space scan"
)
register("lru", LRUCell, "LRU (Orvieto et al. 2023): complex diagonal linear recurrence, ring init")
register(
    "ln_lstm", LNLSTMCell,
    "layer-normalised LSTM (Ba et al. 2016): LN(x W_x) + LN(h W_h) + b, h' = o tanh(LN(c'))",
)
register("ln_gru", LNGRUCell, "layer-normalised GRU: LN of the input and recurrent pre-activations")
register(
    "indrnn", IndRNNCell, "IndRNN (Li et al. 2018): relu(W_x x + u * h + b), |u| <= recurrent_max",
    kernel_init="normal", bias_init="zeros",
)


def names() -> list[str]:
    """Registered cell names (entry-point plugins included), sorted."""
    load_group("lstmjax.cells")
    return sorted(_REGISTRY)


def _did_you_mean(word: str, choices) -> str:
    close = close_match(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    load_group("lstmjax.cells")
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown cell {name!r}{_did_you_mean(name, _REGISTRY)}; valid cells: {names()}"
        ) from None


def cell_class(name: str) -> type:
    """The class a registered name builds (its preset options aside)."""
    return _entry(name).cls


def option_names(name: str) -> list[str]:
    """The options ``make(name, hidden_size, **options)`` accepts (the class's fields), sorted."""
    return sorted(f.name for f in dataclasses.fields(_entry(name).cls) if f.name != "hidden_size")


@functools.lru_cache(maxsize=4096)
def _accepts(name: str, option: str, value: Any) -> bool:
    try:
        make(name, hidden_size=1, **{option: value})
    except (ValueError, TypeError):
        return False
    return True


def accepts(name: str, option: str, value: Any) -> bool:
    """Whether cell ``name`` takes ``option=value`` on its own (``forget_bias`` is an option of
    ``cifg``'s class, but its coupled forget gate takes no bias). Cached per (name, option,
    value), so a sweep builds one probe cell per distinct option value, not one per trial."""
    if option not in option_names(name):
        return False
    value = hashable(value)
    try:
        return _accepts(name, option, value)
    except TypeError:  # an unhashable value: no cache
        return _accepts.__wrapped__(name, option, value)


def applicable_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` restricted to those cell ``name`` accepts (see :func:`accepts`), lists made
    tuples: one options block serves a sweep over cells (``forget_bias`` reaches ``lstm`` and
    ``peephole``, not ``gru`` nor ``cifg``). Used once, when a sweep is expanded."""
    return {k: hashable(v) for k, v in options.items() if accepts(name, k, v)}


def make(name: str, hidden_size: int, **options) -> Cell:
    """Build a registered cell: ``make("lstm", 64, forget_bias=1.0)``.

    Unknown names and options raise ``ValueError`` naming the valid choices.
    """
    entry = _entry(name)
    fields = [f.name for f in dataclasses.fields(entry.cls) if f.name != "hidden_size"]
    for opt in options:
        if opt not in fields:
            raise ValueError(
                f"unknown option {opt!r} for cell {name!r}{_did_you_mean(opt, fields)}; "
                f"valid options: {sorted(fields)}"
            )
    return entry.cls(hidden_size, **{**entry.preset, **options})


def describe() -> list[dict[str, Any]]:
    """One dict per registered cell: name, class, preset options and a one-line summary."""
    return [
        {"name": n, "class": e.cls.__name__, "preset": dict(e.preset), "summary": e.summary}
        for n, e in ((n, _REGISTRY[n]) for n in names())
    ]


def __getattr__(name: str):
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(
            f"lstmjax.cells.{name} is deprecated and will be removed in the next release; "
            f"use lstmjax.cells.{new.__name__}",
            DeprecationWarning,
            stacklevel=2,
        )
        return new
    raise AttributeError(f"module 'lstmjax.cells' has no attribute {name!r}")
