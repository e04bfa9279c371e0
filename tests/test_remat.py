"""Bounded-memory training (``remat=K``): the segmented, checkpointed scan gives the plain
scan's outputs and gradients (1e-10 in float64) and saves O(T/K + K) steps, not O(T).

Covered: the fast paths (lstm, gru, ln_lstm) and the reference loop; ``seq_lengths``,
``resets``, ``reverse``, ``return_carries``; K dividing T or not, ``"auto"``, K >= T, K = 1;
bidirectional stacks with dropout; the parallel-scan cells; ``reset_carry`` (how a segment
resets to the scan's initial carry); bad values; ``model.remat`` in configs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _xla import jit as fast_compile_jit

import lstmjax as lj
from lstmjax.cells import Cell
from lstmjax.experiment.schema import ModelConfig

TOL = 1e-10
B, T, D = 3, 11, 2


def _close(a, b, tol=TOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=tol)


def _problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: a * 1.5, cell.init(jax.random.key(seed), D))
    xs = jnp.asarray(rng.normal(size=(B, T, D)))
    carry = jax.tree.map(lambda a: a + 0.3, cell.initial_carry(params, (B,)))
    lengths = jnp.asarray([T, 0, 7])
    resets = jnp.asarray(rng.random((B, T)) < 0.25)
    return params, xs, carry, lengths, resets


def _weights(a):
    return jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape)


def _loss(out):
    """A loss that reads every output: ``ys``, the final carry and (if any) the carries."""
    return sum(jnp.sum(_weights(a) * a) + jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(out))


def _grads(run, params, carry, xs):
    """``(outputs, d/d(params, carry, xs))`` of :func:`_loss` of ``run(params, carry, xs)``."""
    out, vjp = jax.vjp(run, params, carry, xs)
    return out, vjp(jax.grad(_loss)(out))


# (cell, options): the fast LSTM, GRU and LN-LSTM, and the reference loop (fast=False)
FAMILIES = [("lstm", True), ("gru", True),
            pytest.param("ln_lstm", True, marks=pytest.mark.slow),  # make test-all
            pytest.param("lstm", False, marks=pytest.mark.slow)]
SETTINGS = [  # (seq_lengths, resets, reverse, return_carries)
    (False, False, False, False),
    (True, True, False, True),
    (True, True, True, False),
]


@pytest.mark.parametrize("name,fast", FAMILIES,
                         ids=["lstm-fast=True", "gru-fast=True", "ln_lstm-fast=True",
                              "lstm-fast=False"])
def test_remat_equals_plain_scan(x64, name, fast):
    cell = lj.cells.make(name, 5, dtype="float64")
    params, xs, carry, lengths, resets = _problem(cell)
    Ks = (4, "auto", T, 50, 1) if name == "lstm" and fast else (4, "auto")

    @fast_compile_jit
    def results(params, carry, xs):
        out = []
        for use_lengths, use_resets, reverse, carries in SETTINGS:
            kw = dict(seq_lengths=lengths if use_lengths else None,
                      resets=resets if use_resets else None, reverse=reverse,
                      return_carries=carries, fast=fast)
            plain = _grads(lambda p, c, x, kw=kw: lj.scan(cell, p, x, c, **kw), params, carry, xs)
            for K in Ks:  # 4 does not divide T=11; auto is round(sqrt(11)) = 3; K >= T
                rem = _grads(lambda p, c, x, kw=kw, K=K: lj.scan(cell, p, x, c, remat=K, **kw),
                             params, carry, xs)
                out.append((plain, rem))
        return out

    for plain, rem in results(params, carry, xs):
        _close(rem, plain)


def test_remat_time_major_and_empty(x64):
    cell = lj.cells.make("gru", 4, dtype="float64")
    params, xs, carry, _, _ = _problem(cell)
    xs_T = jnp.swapaxes(xs, 0, 1)

    def run(p, c, x, remat=None):
        return lj.scan(cell, p, x, c, time_major=True, remat=remat)

    _close(_grads(lambda *a: run(*a, remat=3), params, carry, xs_T),
           _grads(run, params, carry, xs_T))
    ys, final = lj.scan(cell, params, xs[:, :0], remat="auto")  # T = 0: nothing to segment
    assert ys.shape == (B, 0, 4)
    _close(final, cell.initial_carry(params, (B,)), tol=0)


def test_bidirectional_stack_with_dropout_equals_plain(x64):
    """``lj.RNN(remat=K)``: every layer and direction, with lengths, resets, dropout,
    recurrent dropout and weight drop (same key: the same masks)."""
    cell = lj.cells.make("lstm", 4, dtype="float64")
    kw = dict(num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.1,
              weight_drop=0.1)
    plain_net, remat_net = lj.RNN(cell, **kw), lj.RNN(cell, remat=3, **kw)
    assert remat_net.remat == 3 and plain_net.remat is None
    params = plain_net.init(jax.random.key(0), D)
    _, xs, _, lengths, resets = _problem(cell)
    carry = plain_net.initial_carry(params, (B,))
    key = jax.random.key(7)

    @fast_compile_jit
    def results(params, carry, xs):
        def run(net):
            return lambda p, c, x: net.apply(p, x, c, seq_lengths=lengths, resets=resets, key=key)

        return _grads(run(plain_net), params, carry, xs), _grads(run(remat_net), params, carry, xs)

    plain, rem = results(params, carry, xs)
    _close(rem, plain)


@pytest.mark.parametrize("name", ["mingru", *(pytest.param(n, marks=pytest.mark.slow)
                                              for n in ("minlstm", "lru"))])
def test_parallel_cells_reset_to_the_initial_carry(x64, name):
    """A segment of a parallel-scan cell resets to the scan's initial carry too."""
    cell = lj.cells.make(name, 4, dtype="float64", mode="parallel")
    params, xs, carry, lengths, resets = _problem(cell)

    def run(p, c, x, remat=None):
        return lj.scan(cell, p, x, c, seq_lengths=lengths, resets=resets, remat=remat)

    _close(fast_compile_jit(lambda *a: _grads(lambda *b: run(*b, remat=4), *a))(params, carry,
                                                                                 xs),
           fast_compile_jit(lambda *a: _grads(run, *a))(params, carry, xs))


def _reference(cell):
    cls = type("Reference", (type(cell),), {"recur_scan": Cell.reference_recur_scan})
    return cls(**{f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)})


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "ln_lstm", "indrnn", "mingru"])
def test_reset_carry_is_what_a_reset_restores(x64, name):
    """``recur_scan(..., reset_carry=r)``: fast loops, parallel cells and the reference loop
    agree, gradients w.r.t. ``r`` included; the default is the initial carry."""
    opts = {"mode": "parallel"} if name == "mingru" else {}
    cell = lj.cells.make(name, 4, dtype="float64", **opts)
    params, xs, carry, _, _ = _problem(cell)
    rng = np.random.default_rng(3)
    xp = cell.project(params, jnp.swapaxes(xs, 0, 1))
    valid = jnp.asarray(rng.random((T, B)) < 0.8)
    reset = jnp.asarray(rng.random((T, B)) < 0.3)
    r0 = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), carry)

    def run(c, p, carry, r0, xp):
        return c.recur_scan(p, carry, xp, valid, reset, reset_carry=r0, return_carries=True)

    @fast_compile_jit
    def results(params, carry, r0, xp):
        out = [jax.vjp(lambda *a, c=c: run(c, *a), params, carry, r0, xp)
               for c in (cell, _reference(cell))]
        return [(o, vjp(jax.grad(_loss)(o))) for o, vjp in out]

    fast, ref = results(params, carry, r0, xp)
    _close(fast, ref)
    same = jax.jit(lambda p, c, x: (run(cell, p, c, c, x),
                                    cell.recur_scan(p, c, x, valid, reset, return_carries=True)))
    _close(*same(params, carry, xp), tol=0)


# ---- memory ------------------------------------------------------------------------------
def _saved_bytes(fn, *args):
    """Bytes of the residuals ``jax.vjp(fn, *args)`` keeps for the backward pass (the leaves
    of the vjp function), found abstractly (nothing runs)."""
    leaves = jax.eval_shape(lambda *a: jax.tree.leaves(jax.vjp(fn, *a)[1]), *args)
    return sum(a.size * a.dtype.itemsize for a in leaves)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_remat_saves_o_sqrt_t_not_o_t(name):
    """At T=1000 the plain scan saves O(T) steps of activations; remat=K saves the T/K
    carries (and the inputs, which any gradient keeps): O(T/K + K) steps. Also XLA's own
    buffer plan of the gradient program shrinks (measured, not timed)."""
    T_long, Bm, H = 1000, 4, 16
    cell = lj.cells.make(name, H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((Bm, T_long, D))

    def loss(remat):  # linear in ys: the loss itself saves nothing
        return lambda p, x: jnp.sum(lj.scan(cell, p, x, remat=remat)[0])

    inputs = sum(a.size * 4 for a in jax.tree.leaves((params, xs)))
    step = Bm * H * 4  # bytes of one [B, H] step
    plain = _saved_bytes(loss(None), params, xs) - inputs
    assert plain >= 3 * T_long * step  # e.g. the LSTM: 6 [T, B, H] and xp [T, B, 4H]
    for K in (32, "auto"):
        k = 32 if K == 32 else round(T_long**0.5)
        saved = _saved_bytes(loss(K), params, xs) - inputs
        assert saved <= 4 * (T_long // k + k) * step, (K, saved, plain)
        assert saved < plain / 10

    def temp(remat):
        program = jax.jit(jax.grad(loss(remat))).lower(params, xs).compile()
        return program.memory_analysis().temp_size_in_bytes

    assert temp("auto") < temp(None) / 3


# ---- options -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "sqrt", "AUTO", [4]])
def test_bad_remat_values_are_one_line_errors(bad):
    cell = lj.cells.make("lstm", 4)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((B, T, D))
    for call in (lambda: lj.scan(cell, params, xs, remat=bad), lambda: lj.RNN(cell, remat=bad)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and f"remat={bad!r}" in msg and "'auto'" in msg


def test_remat_with_zoneout_is_refused():
    cell = lj.cells.make("lstm", 4)
    with pytest.raises(ValueError, match=r"remat=4 does not combine with zoneout"):
        lj.RNN(cell, remat=4, zoneout=0.1)


def test_model_remat_in_configs():
    from lstmjax.train.model import make_model

    assert ModelConfig().remat is None
    assert ModelConfig(remat="auto").remat == "auto" and ModelConfig(remat=16).remat == 16
    for bad in (0, "fast", True, 2.5):
        with pytest.raises(ValueError, match="integer >= 1"):
            ModelConfig(remat=bad)
    cfg = lj.experiment.from_dict({"task": {"name": "adding", "length": 20},
                                   "model": {"cell": "gru", "remat": "auto"}})
    assert cfg.model.remat == "auto"
    model = make_model(cfg.model, input_size=2, output_size=1)
    assert model.net.remat == "auto"
    params = model.init(jax.random.key(0))
    x = jnp.ones((2, 9, 2))
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x)))(params)
    plain = make_model(cfg.model.model_copy(update={"remat": None}), 2, 1)
    _close(grads, jax.grad(lambda p: jnp.sum(plain.apply(p, x)))(params), tol=1e-5)


def test_memory_estimate_counts_remat():
    from lstmjax.experiment.resources import estimate_bytes

    def cfg(remat):
        return lj.experiment.from_dict({"task": {"name": "adding", "length": 10_000},
                                        "model": {"cell": "lstm", "remat": remat},
                                        "train": {"batch_size": 32, "eval_batch_size": 8}})

    assert estimate_bytes(cfg("auto")) < estimate_bytes(cfg(None)) / 4
