"""Loading experiment configs: YAML -> ``--set`` overrides -> validated, frozen config.

    cfg = load_config("configs/quickstart.yaml", overrides=["train.steps=200"])

Every problem raises :class:`ConfigError` whose message is one line, ``key.path: problem``,
naming the bad value and what was expected, with a did-you-mean for misspelt keys and names.
Validation is one pass (:func:`from_dict`, in :mod:`.validate`): the schema (:mod:`.schema`),
then the sweep is expanded and each trial's cell and task are built once, so a config that
loads is a config that runs. The schema and its defaults are documented in
:mod:`lstmjax.experiment.schema`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from lstmjax.experiment.errors import (
    ConfigError,
    type_name,
)
from lstmjax.experiment.schema import (
    ExperimentConfig,
    ModelConfig,
    OutputConfig,
    TaskConfig,
    TrainConfig,
)
from lstmjax.experiment.sweep import (
    Trial,
)
from lstmjax.experiment.validate import from_dict, load_trials, trial_at

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "TaskConfig",
    "ModelConfig",
    "TrainConfig",
    "OutputConfig",
    "load_config",
    "load_experiment",
    "from_dict",
    "load_trials",
    "trial_at",
    "to_dict",
    "dump_yaml",
    "parse_override",
    "apply_overrides",
]


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------


MAX_CONFIG_BYTES = 1 << 20  # a config file (or --set value) larger than 1 MB is refused
MAX_ALIASES = 1000  # YAML aliases (*ref) per document
MAX_NODES = 100_000  # values in the document once aliases are expanded


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.1 needs ``3.0e-4``), rejects
    duplicate keys, supports merge keys (``<<: *base``) and caps aliases ("billion laughs")."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name)", mark
                )
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` -- merged keys may be overridden by the explicit ones
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text)} characters is larger than the 1 MB limit")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    _check_expanded_size(data, source)
    return data


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuse documents whose aliases expand to more than MAX_NODES values (shared objects are
    counted at every place they appear, as validation and copies would see them)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(
                f"{source}: the document expands to more than {MAX_NODES} values "
                "(YAML aliases nested in aliases?)"
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def dump_yaml(data: dict) -> str:
    """YAML text for a plain dict (keys in insertion order)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def to_dict(cfg: BaseModel) -> dict:
    """A plain, YAML/JSON-ready dict of a config (seeds as a list)."""
    return cfg.model_dump(mode="json")


# ----------------------------------------------------------------------------------------------
# Loading and overrides
# ----------------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                imports: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply ``key=value`` overrides, validate.
    ``imports``: modules imported first, added to the config's own ``imports:`` (and so
    recorded in the run); ``lstmjax run --import MODULE``.

    Override values are read as YAML (``3e-4``, ``[lstm, gru]``, ``{}``); ``sweep.<key>=[...]``
    sets a sweep entry, and overriding a swept key (``model.cell=lstm``) pins it, removing it
    from the sweep. ``name`` defaults to the file's stem. Raises :class:`ConfigError`.
    """
    return load_experiment(path, overrides, imports=imports)[0]


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                    imports: list[str] | tuple[str, ...] = ()
                    ) -> tuple[ExperimentConfig, list[Trial]]:
    """:func:`load_config` and the trials it validated (``expand(cfg)``: the sweep expanded
    once, to be passed along instead of expanded again)."""
    path = Path(path)
    text = _read_config_file(path)
    raw = _parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: empty config (expected a mapping with at least `task`)")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections "
            f"(name, task, model, train, sweep, output), got {type_name(raw)}"
        )
    derived = "name" not in raw
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides)
    if imports:
        own = raw.get("imports") or []
        own = [own] if isinstance(own, str) else list(own) if isinstance(own, list) else own
        if isinstance(own, list):
            raw["imports"] = own + [m for m in imports if m not in own]
    try:
        return load_trials(raw)
    except ConfigError as e:
        if derived and raw.get("name") == path.stem and str(e).startswith("name: "):
            raise ConfigError(
                f"{e} -- the name comes from the file name {path.name!r}; "
                "set `name:` in the config or rename the file"
            ) from None
        raise


def _read_config_file(path: Path) -> str:
    """The file's text: a regular file of at most 1 MB of UTF-8 (not a device, FIFO, directory)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(f"{path}: cannot read config ({why})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: cannot read config (IsADirectoryError)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file (a config must be a YAML file)")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size} bytes is larger than the {MAX_CONFIG_BYTES} byte limit "
            "for a config file"
        )
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        return data.decode("utf-8")
    except (PermissionError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: cannot read config ({type(e).__name__})") from None


def apply_overrides(raw: dict, overrides) -> dict:
    """``raw`` with ``key=value`` overrides applied in place (see :func:`load_config`)."""
    for item in overrides:
        _set_override(raw, *parse_override(item))
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.learning_rate=3e-4"`` -> ``("train.learning_rate", 3e-4)`` (value read as YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
        shown = item if item.isprintable() else repr(item)
        raise ConfigError(
            f"--set {shown}: expected key=value with a dotted key, "
            "e.g. train.learning_rate=3e-4"
        )
    return key, _parse_yaml(text, f"--set {key}") if text.strip() else ""


def _set_override(raw: dict, key: str, value: Any) -> None:
    """Set a dotted key; overriding a swept key pins it (removes it from the sweep)."""
    parts = key.split(".")
    if parts[0] == "sweep" and len(parts) > 1:
        parts = ["sweep", ".".join(parts[1:])]
    elif isinstance(raw.get("sweep"), dict):
        raw["sweep"].pop(key, None)
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: cannot set {key}: {where} is not a mapping")
        node = child
    node[parts[-1]] = value
