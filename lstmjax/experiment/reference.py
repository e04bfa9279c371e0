"""The config reference (``lstmjax config --reference``, ``docs/config.md``), generated.

Every key, its type and default come from the schema's pydantic models
(:mod:`lstmjax.experiment.schema`), what it means from the annotated YAML in that module's
docstring, the task parameters and cell options from the registries -- so the reference
cannot drift from the code (``tests/test_docs.py`` keeps ``docs/config.md`` equal to it, and
fails when a field has no line in the annotated YAML).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

from lstmjax.experiment import schema

__all__ = ["reference", "documented_keys", "undocumented"]

_LINE = re.compile(r"^(?P<indent> *)(?P<key>[a-z_][a-z0-9_]*):(?P<rest>.*)$")


def documented_keys() -> dict[str, str]:
    """Dotted key -> its comment in the schema docstring's annotated YAML (continuation
    comment lines joined), as a Markdown table cell."""
    return {k: _esc(comment) for k, (_, comment) in _documented().items()}


def _documented() -> dict[str, tuple[str, str]]:
    """Dotted key -> (the value written in the annotated YAML, its comment)."""
    doc = schema.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]
    out: dict[str, tuple[str, str]] = {}
    stack: list[tuple[int, str]] = []
    last: list[str] = []
    for line in block.splitlines():
        m = _LINE.match(line)
        if m is None:  # a comment continuing the previous key's
            text = line.split("#", 1)[1].strip() if "#" in line else ""
            for key in last:
                out[key] = (out[key][0], f"{out[key][1]} {text}".strip())
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        rest = m["rest"]
        comment = rest.split("#", 1)[1].strip() if "#" in rest else ""
        # `b1: 0.9, b2: 0.999, eps: 1.0e-8   # ...` documents three keys on one line
        keys = [m["key"], *re.findall(r",\s*([a-z_][a-z0-9_]*):", rest.split("#", 1)[0])]
        parent = ".".join(k for _, k in stack)
        last = [f"{parent}.{k}" if parent else k for k in keys]
        value = rest.split("#", 1)[0].split(",")[0].strip()
        for key in last:
            out[key] = (value, comment)
        stack.append((indent, m["key"]))
    return out


def _esc(text: Any) -> str:
    """Free text as one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    if origin is tuple:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        made = field.default_factory()
        return "(below)" if isinstance(made, BaseModel) else _value(
            tuple(made) if isinstance(made, list) else made) if made != {} else "{}"
    return _value(field.default)


def _submodel(field) -> type[BaseModel] | None:
    """The section model a field holds (also inside ``X | None``), if any."""
    for a in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _rows(prefix: str, model: type[BaseModel], docs: dict[str, str], out: list[str]
          ) -> list[tuple[str, type[BaseModel]]]:
    """One table row per field of ``model``; returns the (path, model) of its sub-sections."""
    nested = []
    for key, field in model.model_fields.items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(f"| `{key}` | {_type(field.annotation)} | `{_default(field)}` | "
                   f"{docs.get(path, '')} |")
        if (sub := _submodel(field)) is not None:
            nested.append((path, sub))
    return nested


def _section(name: str, model: type[BaseModel], docs: dict[str, str], out: list[str]) -> None:
    out += [f"### `{name}`", "", (model.__doc__ or "").strip().splitlines()[0], "",
            "| key | type | default | meaning |", "|:--|:--|:--|:--|"]
    nested = _rows(name, model, docs, out)
    out.append("")
    for path, sub in nested:
        _section(path, sub, docs, out)


def _sweep(docs: dict[str, str], out: list[str]) -> None:
    out += ["### `sweep`", "", docs.get("sweep", ""), "",
            "| reserved key | default | meaning |", "|:--|:--|:--|"]
    for key, (value, comment) in _documented().items():
        if key.startswith("sweep."):
            out.append(f"| `{key.removeprefix('sweep.')}` | `{value}` | {_esc(comment)} |")
    out.append("")


def _tasks(out: list[str]) -> None:
    from lstmjax import tasks

    out += ["## Task parameters", "",
            "Beside `task.name`; `length` is each task's gap parameter "
            "(`task.dependency_lags` says how far back the needed information lies).", "",
            "| task | parameters (defaults) | source |", "|:--|:--|:--|"]
    for name in tasks.names():
        cls = tasks.get(name)
        params = ", ".join(f"`{f.name}: {_value(f.default)}`" for f in dataclasses.fields(cls))
        out.append(f"| `{name}` | {_esc(params)} | {_esc(getattr(cls, 'source', ''))} |")
    out.append("")


def _cells(out: list[str]) -> None:
    from lstmjax import cells

    out += ["## Cell options (`model.options`)", "",
            "Each option reaches the cells of the sweep that take it; a named cell may preset "
            "some.", "", "| cell | options | preset | summary |", "|:--|:--|:--|:--|"]
    for row in cells.describe():
        opts = ", ".join(f"`{o}`" for o in cells.option_names(row["name"]))
        preset = ", ".join(f"`{k}: {_value(v)}`" for k, v in row["preset"].items())
        out.append(f"| `{row['name']}` | {opts} | {_esc(preset)} | {_esc(row['summary'])} |")
    out.append("")


def reference() -> str:
    """The whole config reference as Markdown."""
    docs = documented_keys()
    out = ["# Config reference", "",
           "Generated from the schema by `lstmjax config --reference`; do not edit by hand "
           "(`tests/test_docs.py` checks it is current). Only `task.name` is required; every "
           "other key has the default shown. `--set key=value` overrides any of them.", "",
           "## Sections", "",
           "| key | type | default | meaning |", "|:--|:--|:--|:--|"]
    nested = _rows("", schema.ExperimentConfig, docs, out)
    out.append("")
    for key, model in nested:
        _section(key, model, docs, out)
        if key == "train":
            _sweep(docs, out)
    _tasks(out)
    _cells(out)
    return "\n".join(out).rstrip() + "\n"


def undocumented() -> list[str]:
    """Schema fields with no line, or no comment, in the annotated YAML (a test keeps this
    empty)."""
    docs = documented_keys()
    missing = []

    def walk(prefix: str, model: type[BaseModel]) -> None:
        for key, field in model.model_fields.items():
            path = f"{prefix}.{key}" if prefix else key
            if not docs.get(path):
                missing.append(path)
            if (sub := _submodel(field)) is not None:
                walk(path, sub)

    walk("", schema.ExperimentConfig)
    return missing
