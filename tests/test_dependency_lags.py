"""``task.dependency_lags(batch)``: how far back the information each sequence's scored outputs
need lies. The oracle recomputes it per sequence in plain NumPy loops from each task's
published definition (where the needed symbol or value sits, where it is asked for), reading
only the batch's one-hot ids, targets and mask -- not the task's own jnp code."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import lstmjax as lj

B = 6


def _batch(name, **params):
    task = lj.tasks.make(name, **params)
    batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(3), B)
    got = np.asarray(jax.jit(task.dependency_lags)(batch))
    assert got.shape == (B,) and got.dtype == np.int32
    ids = np.argmax(np.asarray(batch.inputs), axis=-1)
    return task, batch, ids, got


def _scored(batch, b):
    return np.flatnonzero(np.asarray(batch.mask)[b] > 0)


def test_adding_family_from_the_first_marked_value_to_the_answer():
    for name, length in (("adding", 40), ("adding_1997", 40), ("multiplication", 40)):
        task, batch, _, got = _batch(name, length=length)
        markers = np.asarray(batch.inputs)[..., 1]
        for b in range(B):
            marked = [t for t in range(task.seq_len) if markers[b, t] == 1.0]
            assert len(marked) == 2, name
            (answer,) = _scored(batch, b)
            assert got[b] == answer - min(marked), name


def test_copy_recalls_each_symbol_length_plus_n_recall_steps_later():
    task, batch, ids, got = _batch("copy", length=12, n_recall=3)
    targets = np.asarray(batch.targets)
    for b in range(B):
        recalls = [t for t in range(task.seq_len) if targets[b, t] != 0]
        assert [targets[b, t] for t in recalls] == list(ids[b, :3])
        assert got[b] == max(t - i for i, t in enumerate(recalls)) == 12 + 3


def test_variable_copy_lag_is_marker_plus_one():
    task, batch, ids, got = _batch("variable_copy", length=12, n_recall=3)
    targets = np.asarray(batch.targets)
    marker_id = task.n_symbols + 1
    for b in range(B):
        valid = int(batch.lengths[b])
        recalls = [t for t in range(valid) if targets[b, t] != 0]
        sources = list(range(3))  # the symbols are shown first, in order
        assert [targets[b, t] for t in recalls] == [ids[b, s] for s in sources]
        assert got[b] == max(t - s for s, t in zip(sources, recalls, strict=True))
        assert got[b] == list(ids[b]).index(marker_id) + 1


def test_selective_copy_lag_from_each_symbol_to_its_recall():
    task, batch, ids, got = _batch("selective_copy", length=20, n_recall=4)
    for b in range(B):
        shown = [t for t in range(20 + 4) if 1 <= ids[b, t] <= task.n_symbols]
        recalls = list(_scored(batch, b))
        assert [ids[b, t] for t in shown] == [int(batch.targets[b, t]) for t in recalls]
        assert got[b] == max(r - s for s, r in zip(shown, recalls, strict=True))


def test_associative_recall_lag_from_the_value_to_its_query():
    task, batch, ids, got = _batch("associative_recall", length=32, n_pairs=4, vocab_size=64)
    for b in range(B):
        lags = []
        for t in _scored(batch, b):
            key = ids[b, t]
            k = [j for j in range(0, 8, 2) if ids[b, j] == key][0]
            assert ids[b, k + 1] == int(batch.targets[b, t])  # the value follows its key
            lags.append(t - (k + 1))
        assert got[b] == max(lags)


def test_induction_head_lag_from_the_symbol_after_the_trigger():
    task, batch, ids, got = _batch("induction_head", length=20)
    for b in range(B):
        p = list(ids[b]).index(task.n_symbols)  # the first trigger
        (query,) = _scored(batch, b)
        assert ids[b, p + 1] == int(batch.targets[b, query])
        assert got[b] == query - (p + 1)


def test_noise_free_lag_cue_to_last_step():
    task, batch, ids, got = _batch("noise_free_lag", length=15)
    for b in range(B):
        (last,) = _scored(batch, b)
        assert int(batch.targets[b, last]) == ids[b, 0]  # the cue comes back
        assert got[b] == last - 0 == 14


def test_temporal_order_from_the_first_relevant_symbol():
    task, batch, ids, got = _batch("temporal_order", length=60)
    relevant = ("X", "Y")
    symbols = "EBabcdXY"
    for b in range(B):
        valid = int(batch.lengths[b])
        first = min(t for t in range(valid) if symbols[ids[b, t]] in relevant)
        (answer,) = _scored(batch, b)
        assert answer == valid - 1 and got[b] == answer - first


def test_embedded_reber_penultimate_symbol_repeats_the_second():
    task, batch, ids, got = _batch("embedded_reber", length=30)
    targets = np.asarray(batch.targets)
    for b in range(B):
        n = int(batch.lengths[b]) + 1  # symbols in the string
        t_out = n - 3  # the input step whose target is the penultimate symbol
        assert targets[b, t_out] == ids[b, 1]
        assert got[b] == t_out - 1


@pytest.mark.parametrize("name, params", [
    ("parity", {"length": 10}), ("even_pairs", {"length": 10}),
    ("cycle_navigation", {"length": 10}), ("modular_arithmetic", {"length": 9}),
    ("stack_manipulation", {"length": 10}), ("reverse_string", {"length": 10}),
    ("mnist1d", {}), ("digits", {}),
])
def test_whole_input_tasks_from_the_first_step_to_the_last_scored(name, params):
    if name in ("mnist1d", "digits"):
        pytest.importorskip("sklearn" if name == "digits" else "mnist1d")
    task, batch, ids, got = _batch(name, **params)
    for b in range(B):
        assert got[b] == _scored(batch, b).max()
    if name == "reverse_string":  # output n + j reads input n - 1 - j: the largest is 2n - 1
        for b in range(B):
            n = int(batch.lengths[b]) // 2
            assert got[b] == max(n + j - (n - 1 - j) for j in range(n))


def test_every_registered_task_has_lags_inside_its_sequences():
    small = {"listops": {"length": 520}, "digits": {}, "mnist1d": {},
             "associative_recall": {"length": 32}}
    for name in lj.tasks.names():
        if name in ("digits", "mnist1d"):
            continue  # optional data extras; covered above
        task, batch, _, got = _batch(name, **small.get(name, {"length": 24}))
        assert np.all(got >= 1) and np.all(got <= task.seq_len - 1), name
