"""Config errors and their one-line messages: ``key.path: problem (did you mean …?)``.

:class:`ConfigError` is what every config or run-directory problem raises; the CLI prints
``error: <message>`` and exits 2. :func:`format_validation_error` turns pydantic's first error
into such a line, naming the bad value and what was expected.
"""

from __future__ import annotations

import re
from typing import Any

from lstmjax._util import close_match

__all__ = ["ConfigError", "did_you_mean", "format_validation_error", "one_line", "type_name"]


class ConfigError(ValueError):
    """A config problem; ``str(err)`` is one line ``key.path: problem``."""


def did_you_mean(word: Any, choices) -> str:
    """`` (did you mean x?)`` for the closest choice, or ``""``."""
    close = close_match(word, choices)
    return f" (did you mean {close}?)" if close else ""


def type_name(value: Any) -> str:
    """``a mapping``, ``a list``, ``a string``, ``null`` or the type's name."""
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def one_line(e: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(e).split())


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "none_required": "null",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def format_validation_error(err: dict, fields_at) -> str:
    """One line for one pydantic error dict. ``fields_at(loc)`` lists the schema's field names
    at a location (for did-you-mean on unknown keys)."""
    loc = _clean_loc(err["loc"])
    path = ".".join(str(p) for p in loc) or "config"
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        close = close_match(str(loc[-1]), fields_at(loc[:-1]))
        parent = ".".join(str(p) for p in loc[:-1])
        full = f"{parent}.{close}" if parent and close else close
        known = fields_at(loc[:-1])
        hint = (f" (did you mean {full}?)" if close else
                f"; {parent or 'the config'} takes {', '.join(known)}" if known else "")
        return f"{path}: unknown key{hint}"
    if kind == "missing":
        return f"{path}: required key missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        return f"{path}: {value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        expect = "an integer" if isinstance(bound, int) else "a number"
        return f"{path}: expected {expect} {_BOUNDS[kind]} {bound}, got {value!r}"
    if kind == "finite_number":
        return f"{path}: expected a finite number, got {value!r}"
    if kind == "dict_type" and loc and loc[0] == "sweep":
        return f"{path}: expected a mapping of dotted keys to lists, got {type_name(value)}"
    if kind == "list_type" and loc and loc[0] == "sweep":
        return f"{path}: expected a non-empty list of values to sweep over, got {value!r}"
    if kind in _EXPECTED:
        if kind == "float_type" and isinstance(value, str):
            return f"{path}: expected a number, got the string {value!r}"
        shown = type_name(value) if isinstance(value, (dict, list)) else repr(value)
        return f"{path}: expected {_EXPECTED[kind]}, got {shown}"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        # model-level validators name the offending field first: "field: problem"
        head, sep, rest = msg.partition(": ")
        free_form = loc in (("model", "options"), ("sweep",), ("task",))
        if sep and re.fullmatch(r"[A-Za-z0-9_.]+", head) and (head in fields_at(loc) or free_form):
            return f"{path + '.' if loc else ''}{head}: {rest}"
        return f"{path}: {msg}"
    return f"{path}: {err['msg']} (got {value!r})"


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union-branch / function markers (``'function-before[...]'``, types)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"int", "float"})))
