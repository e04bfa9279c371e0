"""The cells package's public surface: class names, deprecated aliases, the registry's one home,
``projection_size``, the carry dtype, the fast-path dependency direction and the option probes
the experiment layer calls (``option_names``, ``accepts``, ``applicable_options``)."""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

import lstmjax as lj
from lstmjax import cells

PACKAGE = pathlib.Path(lj.__file__).parent
NEW = {
    "RNN": "ElmanCell", "LSTM": "LSTMCell", "GRU": "GRUCell", "MGU": "MGUCell",
    "MinGRU": "MinGRUCell", "MinLSTM": "MinLSTMCell", "LRU": "LRUCell",
}  # fmt: skip
H, D = 3, 2


# ---------------------------------------------------------------- names
def test_new_class_names():
    for name in ("ElmanCell", "LSTMCell", "GRUCell", "MGUCell"):
        assert issubclass(getattr(lj.cells, name), cells.Cell)
        assert name in cells.__all__
    assert type(cells.make("lstm", H)) is cells.LSTMCell
    assert type(cells.make("rnn", H)) is cells.ElmanCell
    assert type(cells.make("lru", H)) is cells.LRUCell
    classes = {row["name"]: row["class"] for row in cells.describe()}
    assert classes["lstm"] == "LSTMCell" and classes["gru"] == "GRUCell"
    assert classes["mingru"] == "MinGRUCell" and classes["irnn"] == "ElmanCell"


@pytest.mark.parametrize("old", sorted(NEW))
def test_deprecated_alias_is_the_new_class_and_warns(old):
    new = getattr(cells, NEW[old])
    with pytest.warns(DeprecationWarning, match=rf"lstmjax\.cells\.{NEW[old]}\b"):
        alias = getattr(lj.cells, old)
    assert alias is new
    assert old not in cells.__all__  # `from lstmjax.cells import *` stays warning-free


def test_deprecated_from_import_warns():
    with pytest.warns(DeprecationWarning, match="LSTMCell"):
        from lstmjax.cells import LSTM
    assert LSTM is cells.LSTMCell
    with pytest.warns(DeprecationWarning):
        assert cells.LSTM(4) == cells.make("lstm", 4)  # the contract's lj.cells.LSTM(...)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="Transformer"):
        cells.Transformer  # noqa: B018


# ---------------------------------------------------------------- where things live
def test_every_cell_is_registered_in_the_package_init():
    init_src = (PACKAGE / "cells" / "__init__.py").read_text()
    registered = set(re.findall(r'register\(\s*"([a-z0-9_]+)"', init_src))
    assert set(cells.names()) == registered
    for module in (PACKAGE / "cells").glob("*.py"):
        if module.name != "__init__.py":
            assert "register(" not in module.read_text(), module.name


def _imported_modules(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_fast_imports_nothing_from_cells():
    for path in [*(PACKAGE / "fast").glob("*.py"), PACKAGE / "activations.py"]:
        bad = {m for m in _imported_modules(path) if m.startswith("lstmjax.cells")}
        assert not bad, (path.name, bad)


def test_activation_tables_are_shared():
    activations = importlib.import_module("lstmjax.activations")
    from lstmjax.cells._base import ACTIVATIONS, GATE_FNS

    assert ACTIVATIONS is activations.ACTIVATIONS and GATE_FNS is activations.GATE_FNS


def test_families_dispatch_explicitly():
    """LSTM/GRU/Elman own a ``recur_scan`` that takes the fast loop; the base class does not."""
    for cls in (cells.LSTMCell, cells.GRUCell, cells.ElmanCell):
        assert "recur_scan" in vars(cls)
    assert cells.Cell.recur_scan is not cells.LSTMCell.recur_scan
    assert "recur_scan" not in vars(cells.MGUCell)

    def jaxpr(cell):
        params = cell.init(jax.random.key(0), D)
        carry = cell.initial_carry(params, (2,))
        xp = cell.project(params, jnp.ones((3, 2, D)))
        return str(jax.make_jaxpr(lambda p: cell.recur_scan(p, carry, xp)[1].sum())(params))

    assert "custom_vjp" in jaxpr(cells.make("lstm", H))
    assert "custom_vjp" not in jaxpr(cells.make("mgu", H))


# ---------------------------------------------------------------- protocol sizes and dtypes
# Every registered cell plus the options that change the projection's width.
SIZED = [(n, {}) for n in cells.names()] + [
    ("lstm", {"proj_size": 2}),
    ("nig", {}),
    ("lru", {"state_size": 5}),
    ("gru", {"reset_after": False, "use_bias": False}),
]


@pytest.mark.parametrize(("name", "opts"), SIZED, ids=[f"{n}{o or ''}" for n, o in SIZED])
def test_projection_size_is_the_width_of_project(name, opts):
    cell = cells.make(name, H, **opts)
    params = cell.init(jax.random.key(0), D)
    xp = cell.project(params, jnp.ones((2, 4, D)))
    assert xp.shape == (2, 4, cell.projection_size)
    carry, y = cell.recur(params, cell.initial_carry(params, (2,)), xp[:, 0])
    assert y.shape == (2, cell.output_size)


@pytest.mark.parametrize("name", cells.names())
@pytest.mark.parametrize(("cell_dtype", "other"), [("float32", jnp.bfloat16),
                                                   ("bfloat16", jnp.float32)])
def test_initial_carry_has_the_cell_dtype(name, cell_dtype, other):
    """The carry follows the cell's ``dtype``, not the dtype the params arrive in."""
    cell = cells.make(name, H, dtype=cell_dtype)
    shapes = jax.eval_shape(lambda k: cell.init(k, D), jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, other), shapes)
    for leaf in jax.tree.leaves(cell.initial_carry(params, (2,))):
        assert leaf.dtype == cell.param_dtype, (name, cell_dtype, leaf.dtype)


# ---------------------------------------------------------------- option probes
def test_option_names():
    assert "forget_bias" in cells.option_names("lstm")
    assert "reset_after" in cells.option_names("gru")
    assert "hidden_size" not in cells.option_names("gru")
    assert cells.option_names("cifg") == cells.option_names("lstm")  # one class
    with pytest.raises(ValueError, match="did you mean 'lstm'"):
        cells.option_names("lstn")


def test_accepts():
    assert cells.accepts("lstm", "forget_bias", 1.0)
    assert cells.accepts("peephole", "forget_bias", 1.0)
    assert not cells.accepts("cifg", "forget_bias", 1.0)  # coupled: no forget-gate bias
    assert not cells.accepts("gru", "forget_bias", 1.0)  # not an option of the class
    assert not cells.accepts("lstm", "forget_bias", "abc")  # wrong type
    assert not cells.accepts("lstm", "coupled", "yes")
    assert cells.accepts("lstm", "peepholes", ["i", "f"])  # YAML list: made a tuple
    assert not cells.accepts("lstm", "peepholes", ["x"])


def test_applicable_options():
    options = {"forget_bias": 1.0, "reset_after": False, "peepholes": ["i"]}
    assert cells.applicable_options("gru", options) == {"reset_after": False}
    assert cells.applicable_options("lstm", options) == {"forget_bias": 1.0, "peepholes": ("i",)}
    assert cells.applicable_options("cifg", options) == {"peepholes": ("i",)}
    assert cells.applicable_options("mingru", options) == {}


@pytest.mark.parametrize("name", ["lstm", "mgu"])  # fast path and reference loop
def test_float32_cell_with_float64_params_scans_in_float64(x64, name):
    """The loop runs in the dtype ``recur`` computes in, not the carry's initial dtype."""
    cell = cells.make(name, H)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), D))
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(cell.initial_carry(params)))
    ys, final = lj.scan(cell, params, jnp.ones((2, 4, D)))
    assert ys.dtype == jnp.float64
    assert all(c.dtype == jnp.float64 for c in jax.tree.leaves(final))
