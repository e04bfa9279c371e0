"""Bad input to the cell registry and the cells: clear errors that name the bad value."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

from lstmjax import cells


def test_names_lists_every_required_cell():
    required = {"rnn", "irnn", "lstm", "peephole", "cifg", "gru", "mgu",
                "vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "fgr"}
    assert required <= set(cells.names())  # other families may be registered too
    assert cells.names() == sorted(cells.names())


def test_unknown_cell_name_lists_valid_names_with_did_you_mean():
    with pytest.raises(ValueError, match="did you mean 'lstm'") as info:
        cells.make("lstmm", 4)
    msg = str(info.value)
    assert "'lstmm'" in msg
    for name in cells.names():
        assert f"'{name}'" in msg


def test_unknown_cell_without_close_match_still_lists_names():
    with pytest.raises(ValueError, match=r"unknown cell 'transformer'.*'gru'.*'lstm'"):
        cells.make("transformer", 4)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "mgu"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_non_positive_or_non_integer_hidden_size(name, bad):
    pattern = rf"hidden_size must be a positive integer \(got {re.escape(repr(bad))}\)"
    with pytest.raises(ValueError, match=pattern):
        cells.make(name, bad)


def test_unknown_option_is_named_with_did_you_mean():
    pattern = r"unknown option 'forget_bais'.*did you mean 'forget_bias'"
    with pytest.raises(ValueError, match=pattern):
        cells.make("lstm", 4, forget_bais=1.0)


def test_option_of_another_family_is_unknown():
    with pytest.raises(ValueError, match=r"unknown option 'peepholes' for cell 'gru'.*reset_after"):
        cells.make("gru", 4, peepholes=("i",))
    with pytest.raises(ValueError, match=r"unknown option 'reset_after' for cell 'lstm'"):
        cells.make("lstm", 4, reset_after=False)


@pytest.mark.parametrize("name", ["lstm", "peephole", "gru", "mgu", "rnn", "fgr"])
def test_wrong_input_width_states_expected_and_got(name):
    cell = cells.make(name, 4)
    params = cell.init(jax.random.key(0), 3)
    carry = cell.initial_carry(params, (2,))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 3\].*got shape \(2, 5\)"):
        cell.step(params, carry, jnp.ones((2, 5)))


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_non_positive_input_size(bad):
    with pytest.raises(ValueError, match=rf"input_size must be a positive integer \(got {bad}\)"):
        cells.make("lstm", 4).init(jax.random.key(0), bad)


@pytest.mark.parametrize(
    "name, options, pattern",
    [
        ("peephole", {"peepholes": ("g",)}, r"peephole on gate 'g': no such gate"),
        ("lstm", {"peepholes": ("x",)}, r"peephole on gate 'x'"),
        ("lstm", {"peepholes": ("i",), "input_gate": False},
         r"peephole on gate 'i', but this cell has no 'i' gate"),
        ("nig", {"peepholes": ("i", "f")}, r"peephole on gate 'i', but this cell has no 'i' gate"),
        ("nfg", {"peepholes": ("f",)}, r"peephole on gate 'f', but this cell has no 'f' gate"),
        ("nog", {"peepholes": ("o",)}, r"peephole on gate 'o', but this cell has no 'o' gate"),
        ("cifg", {"peepholes": ("f",)}, r"peephole on gate 'f', but this cell has no 'f' gate"),
        ("peephole", {"peepholes": ("i", "i")}, r"names a gate twice"),
    ],
)
def test_peephole_on_missing_gate_names_the_gate(name, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        cells.make(name, 4, **options)


@pytest.mark.parametrize(
    "name, options, pattern",
    [
        ("lstm", {"activation": "gelu"}, r"activation='gelu' is not valid.*'tanh'"),
        ("gru", {"gate_fn": "tanh"}, r"gate_fn='tanh' is not valid.*'sigmoid'"),
        ("rnn", {"activation": "sigmoidd"}, r"activation='sigmoidd'"),
        ("mgu", {"form": "keras"}, r"form='keras' is not valid.*'flax'.*'paper'"),
        ("lstm", {"dtype": "float16"}, r"dtype='float16' is not valid.*'bfloat16'"),
        ("lstm", {"kernel_init": "he"}, r"unknown initialiser 'he'.*'orthogonal'"),
        ("lstm", {"proj_size": 4}, r"proj_size=4 must be smaller than hidden_size=4"),
        ("lstm", {"proj_size": -1}, r"proj_size must be a positive integer \(got -1\)"),
        ("lstm", {"chrono": 2.0}, r"chrono=2.0 must be a T_max > 2"),
        ("gru", {"chrono": 1}, r"chrono=1 must be a T_max > 2"),
        ("cifg", {"chrono": 10.0}, r"chrono init needs separate input and forget gates"),
        ("nfg", {"forget_bias": 1.0}, r"forget_bias needs a separate forget gate"),
        ("cifg", {"forget_bias": 1.0}, r"forget_bias needs a separate forget gate"),
        ("lstm", {"forget_bias": 1.0, "chrono": 10.0}, r"either forget_bias or chrono"),
        ("cifg", {"input_gate": False}, r"coupled=True needs the input gate"),
    ],
)
def test_bad_options_name_the_value(name, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        cells.make(name, 4, **options)


def test_cells_are_hashable_static_arguments():
    """Cells are frozen: usable as ``jax.jit`` static arguments, equal when options are."""
    a = cells.make("peephole", 4, peepholes=["i", "o"])
    b = cells.make("peephole", 4, peepholes=("i", "o"))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(Exception):  # noqa: B017 - dataclasses.FrozenInstanceError
        a.hidden_size = 5


def test_make_accepts_the_documented_call_forms():
    cell = cells.make("lstm", hidden_size=8, forget_bias=1.0)
    assert cell == cells.LSTMCell(8, forget_bias=1.0)
    assert cells.make("peephole", 8) == cells.LSTMCell(8, peepholes=("i", "f", "o"))
    assert cells.make("cifg", 8).coupled is True
    assert cells.make("gru", 8) == cells.GRUCell(8, reset_after=True)
    assert cells.make("irnn", 8).activation == "relu"
    assert cells.make("irnn", 8).recurrent_init == "identity"


@pytest.mark.parametrize(
    "name, opts",
    [("lstm", {"forget_bias": 1.0}), ("lstm", {"chrono": 50}), ("gru", {"chrono": 50})],
)
def test_bias_options_without_bias_are_rejected(name, opts):
    with pytest.raises(ValueError, match="use_bias=True"):
        cells.make(name, 4, use_bias=False, **opts)


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"forget_bias": "abc"}, r"forget_bias='abc' must be a number"),
        ({"coupled": "yes"}, r"coupled='yes' must be true or false"),
        ({"proj_size": 2.0}, r"proj_size=2.0 must be an integer"),
        ({"activation": 3}, r"activation=3 must be a string"),
    ],
)
def test_option_of_the_wrong_type_is_named(opts, match):
    with pytest.raises(ValueError, match=match):
        cells.make("lstm", 4, **opts)
