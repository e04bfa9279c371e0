"""The task registry and protocol: names, make, attributes, errors, describe, jit/vmap."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import jax
import numpy as np
import pytest

from lstmjax import tasks

ALL = [
    "adding",
    "adding_1997",
    "associative_recall",
    "copy",
    "cycle_navigation",
    "digits",
    "embedded_reber",
    "even_pairs",
    "induction_head",
    "listops",
    "mnist1d",
    "modular_arithmetic",
    "multiplication",
    "noise_free_lag",
    "parity",
    "reverse_string",
    "selective_copy",
    "stack_manipulation",
    "temporal_order",
    "variable_copy",
]

# Shortest valid `length` of each task (the layout's minimum) at default parameters.
MIN_LENGTH = {
    "adding": 2,
    "adding_1997": 22,
    "multiplication": 22,
    "temporal_order": 15,
    "copy": 1,
    "variable_copy": 1,
    "selective_copy": 1,
    "noise_free_lag": 2,
    "embedded_reber": 9,
    "associative_recall": 32,
    "induction_head": 3,
    "parity": 1,
    "even_pairs": 1,
    "cycle_navigation": 1,
    "modular_arithmetic": 1,
    "stack_manipulation": 1,
    "reverse_string": 1,
    "listops": 502,
    "mnist1d": 1,
}
FIXED_LENGTH = {"digits": 64}  # set by the data, the only valid value
EXTRAS = {"digits": "sklearn", "mnist1d": "mnist1d"}  # tasks of the optional `data` extra


def skip_without_extra(name):
    if name in EXTRAS and importlib.util.find_spec(EXTRAS[name]) is None:
        pytest.skip(f"{name} needs the `data` extra (pip install 'lstmjax[data]')")


def one_line_error(fn, *fragments):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_names_are_sorted_and_complete():
    assert tasks.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_protocol_attributes(name):
    skip_without_extra(name)
    task = tasks.make(name)
    assert task.name == name
    assert dataclasses.is_dataclass(task)
    fields = {f.name for f in dataclasses.fields(task)}
    assert "length" in fields and "solved_threshold" in fields
    assert task == tasks.make(name) and hash(task) == hash(tasks.make(name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.length = 3
    assert task.loss_type in ("mse", "xent")
    for attr in ("length", "input_size", "output_size", "seq_len"):
        assert isinstance(getattr(task, attr), int) and getattr(task, attr) > 0
    assert isinstance(task.chance_loss, float) and task.chance_loss > 0
    assert task.seq_len >= task.length - 1
    if name in FIXED_LENGTH:
        assert task.length == task.seq_len == FIXED_LENGTH[name]
        return
    # The gap parameter really is `length`: it changes the layout.
    longer = tasks.make(name, length=2 * task.length)
    assert longer.seq_len > task.seq_len or name == "embedded_reber"


def test_published_chance_levels():
    def chance(name, **params):
        return tasks.make(name, **params).chance_loss

    assert chance("adding") == pytest.approx(1 / 6)
    for T in (100, 500, 2000):
        assert chance("copy", length=T) == pytest.approx(10 * math.log(8) / (T + 20))
    assert chance("copy", length=100) == pytest.approx(0.1733, abs=1e-4)  # uRNN table
    assert chance("temporal_order") == pytest.approx(math.log(4))
    assert chance("temporal_order", variant="6b") == pytest.approx(math.log(8))
    assert chance("noise_free_lag") == pytest.approx(math.log(2))


def test_unknown_task_suggests_the_closest_name():
    one_line_error(lambda: tasks.make("addding"), "'addding'", "did you mean 'adding'", "copy")
    one_line_error(lambda: tasks.make("reber"), "embedded_reber")


def test_unknown_parameter_suggests_the_closest_name():
    one_line_error(
        lambda: tasks.make("copy", lenght=10), "'lenght'", "did you mean 'length'", "n_symbols"
    )
    one_line_error(lambda: tasks.make("temporal_order", varient="6b"), "did you mean 'variant'")


@pytest.mark.parametrize("name", sorted(MIN_LENGTH))
def test_gap_too_short_names_the_parameter_and_range(name):
    skip_without_extra(name)
    shortest = MIN_LENGTH[name]
    tasks.make(name, length=shortest)
    one_line_error(
        lambda: tasks.make(name, length=shortest - 1),
        f"length={shortest - 1}",
        f"length >= {shortest}",
    )


def test_temporal_order_minimum_depends_on_the_variant():
    tasks.make("temporal_order", length=15, variant="6b")
    one_line_error(lambda: tasks.make("temporal_order", length=14, variant="6b"), ">= 15")


@pytest.mark.parametrize(
    "name,params,fragments",
    [
        ("copy", dict(n_symbols=1), ["n_symbols=1", "n_symbols >= 2"]),
        ("variable_copy", dict(n_symbols=0), ["n_symbols=0", "n_symbols >= 2"]),
        ("selective_copy", dict(n_symbols=1), ["n_symbols=1", "n_symbols >= 2"]),
        ("copy", dict(n_recall=0), ["n_recall=0", "n_recall >= 1"]),
        ("temporal_order", dict(variant="6c"), ["variant='6c'", "'6a', '6b'"]),
        ("noise_free_lag", dict(variant="2c"), ["variant='2c'", "'2a', '2b'"]),
        ("adding", dict(length=100.0), ["length=100.0", "integer"]),
        ("adding", dict(length=True), ["length=True", "integer"]),
        ("adding_1997", dict(tolerance=0.0), ["tolerance=0.0"]),
        ("copy", dict(solved_threshold=1.5), ["solved_threshold=1.5", "<= 1.0"]),
    ],
)
def test_bad_parameters(name, params, fragments):
    one_line_error(lambda: tasks.make(name, **params), name, *fragments)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size(batch_size):
    task = tasks.make("adding", length=4)
    one_line_error(
        lambda: task.sample(jax.random.key(0), batch_size),
        f"batch_size={batch_size}",
        "batch_size >= 1",
    )


def test_traced_batch_size_is_a_clear_error():
    task = tasks.make("adding", length=4)
    one_line_error(lambda: jax.jit(task.sample)(jax.random.key(0), 4), "static")


def test_outputs_of_the_wrong_shape_are_rejected():
    task = tasks.make("copy", length=3)
    batch = task.sample(jax.random.key(0), 2)
    one_line_error(lambda: task.loss(np.zeros((2, task.seq_len, 10)), batch), "[2, 23, 9]")


def test_sample_under_vmap_equals_per_key_samples_and_task_is_a_static_arg():
    """Variable lengths and right padding: vmap over keys gives the per-key batches.
    Raw uint32 keys (``PRNGKey``) work as well as typed ones (used elsewhere)."""
    task = tasks.make("variable_copy", length=6, n_recall=3)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    per_key = jax.jit(lambda t, k: t.sample(k, 5), static_argnums=0)
    mapped = jax.jit(jax.vmap(task.sample, in_axes=(0, None)), static_argnums=1)(keys, 5)
    for i in range(2):
        single = per_key(tasks.make("variable_copy", length=6, n_recall=3), keys[i])
        for field in range(4):
            np.testing.assert_array_equal(single[field], mapped[field][i])


def test_describe_lists_every_task_with_defaults_and_chance():
    rows = tasks.describe()
    assert [r["name"] for r in rows] == ALL
    for row in rows:
        if row["name"] in EXTRAS and importlib.util.find_spec(EXTRAS[row["name"]]) is None:
            assert math.isnan(row["chance_loss"]) and "lstmjax[data]" in row["summary"]
            continue
        assert row["params"]["length"] == tasks.make(row["name"]).length
        assert row["chance_loss"] == pytest.approx(tasks.make(row["name"]).chance_loss)
        assert row["loss_type"] in ("mse", "xent") and row["source"] and row["summary"]
    table = tasks.format_table(rows)
    lines = table.splitlines()
    assert len(lines) == len(ALL) + 2
    assert "chance" in lines[0] and "parameters" in lines[0]
    copy_line = next(line for line in lines if line.startswith("copy "))
    assert "0.1733" in copy_line and "n_symbols=8" in copy_line and "Arjovsky" in copy_line
    assert tasks.format_table() == table
