"""Small helpers shared by every layer (a leaf module: imports nothing from lstmjax).

* :func:`close_match` -- the one did-you-mean helper for cells, tasks and config keys;
* :func:`hashable` -- YAML lists -> tuples, so options can reach frozen (hashable) dataclasses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["close_match", "hashable"]


def close_match(word: Any, choices: Iterable[Any], cutoff: float = 0.6) -> str | None:
    """The choice closest to ``word`` (difflib ratio >= ``cutoff``), or None."""
    hits = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return hits[0] if hits else None


def hashable(obj: Any) -> Any:
    """YAML lists -> tuples, recursively (cells and tasks are frozen, hashable dataclasses)."""
    if isinstance(obj, dict):
        return {k: hashable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return tuple(hashable(v) for v in obj)
    return obj
