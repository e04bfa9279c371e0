"""Cells and tasks from other packages: Python entry points and imported modules.

A package declares its cells (or tasks) in its ``pyproject.toml``::

    [project.entry-points."lstmjax.cells"]
    janet = "my_package.cells"              # a module that calls lj.cells.register(...)
    [project.entry-points."lstmjax.tasks"]
    my_tasks = "my_package.tasks:register"  # or a function called with no arguments

The registries load each group once, the first time a name is looked up or listed (never at
``import lstmjax``). A config's ``imports: [module, ...]`` (``lstmjax run --import MODULE``)
imports modules the same way before the config is validated. Every failure is one line naming
the entry point or module, what it raised and what to do.
"""

from __future__ import annotations

import importlib
import threading
from importlib import metadata

__all__ = ["PluginError", "load_group", "import_modules"]

_LOADED: set[str] = set()
_LOCK = threading.RLock()


class PluginError(ValueError):
    """An entry point or an ``imports:`` module that could not be loaded."""


def load_group(group: str) -> None:
    """Load every entry point of ``group`` (once per process): import its module and call its
    object when it names one (``module:function``)."""
    with _LOCK:
        if group in _LOADED:
            return
        _LOADED.add(group)  # before loading: a plugin that lists the registry must not recurse
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = f" (from {ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
            try:
                obj = ep.load()
                if ":" in ep.value:
                    obj()
            except Exception as e:  # noqa: BLE001 -- whatever a plugin raises, one line
                raise PluginError(
                    f"entry point {ep.name} = {ep.value!r} of group {group}{dist} failed: "
                    f"{type(e).__name__}: {_first_line(e)}; fix or uninstall that package"
                ) from None


def import_modules(modules, where: str = "imports") -> None:
    """Import each module (a dotted name) so that it registers its cells or tasks."""
    for name in modules:
        if not isinstance(name, str) or not name or not all(
                part.isidentifier() for part in name.split(".")):
            raise PluginError(f"{where}: {name!r} is not a module name (e.g. my_package.cells)")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                raise PluginError(
                    f"{where}: no module named {name!r}; install the package that provides it "
                    "or put its directory on PYTHONPATH") from None
            raise PluginError(f"{where}: importing {name!r} failed: ModuleNotFoundError: "
                              f"{_first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 -- whatever the module raises, one line
            raise PluginError(f"{where}: importing {name!r} failed: {type(e).__name__}: "
                              f"{_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
