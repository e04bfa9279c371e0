"""The fast custom-VJP loops (lstmjax.fast) equal the reference loop exactly.

Every fast configuration is compared, in float64, with ``Cell.reference_recur_scan`` (autodiff
through the plain ``lax.scan``): outputs, final carry, per-step carries and the
gradients w.r.t. every parameter, the initial carry and the inputs (through the
hoisted projection), with masks (``valid_T``) and resets, to 1e-10. The engine-level
tests go through ``lj.scan`` with ``seq_lengths``, ``resets`` and ``reverse``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tolerance import assert_same_math
from _xla import jit as fast_compile_jit

import lstmjax as lj
from lstmjax import fast
from lstmjax.cells import Cell, ElmanCell, GRUCell, IndRNNCell, LNLSTMCell, LSTMCell
from lstmjax.fast import elman as fast_elman
from lstmjax.fast import gru as fast_gru
from lstmjax.fast import indrnn as fast_indrnn
from lstmjax.fast import ln_lstm as fast_ln_lstm
from lstmjax.fast import lstm as fast_lstm

TOL = 1e-10

# (cell name, options, batch shape, T): options cover every switch the fast path claims.
CASES = [
    ("lstm", {}, (3,), 7),
    ("lstm", {"gate_fn": "hard_sigmoid", "activation": "softsign", "use_bias": False}, (), 6),
    ("peephole", {}, (2, 2), 5),
    ("cifg", {"peepholes": ("i", "o")}, (3,), 6),
    ("nfg", {}, (2,), 5),
    # Greff's NIG + NIAF and NOG + NOAF switches, two at a time
    ("lstm", {"input_gate": False, "input_activation": False, "peepholes": ("f", "o")}, (2,), 5),
    ("lstm", {"output_gate": False, "output_activation": False, "peepholes": ("i", "f")},
     (2,), 5),
    ("gru", {}, (3,), 7),
    ("gru", {"reset_after": False}, (2, 2), 5),
    ("gru", {"use_bias": False, "activation": "relu", "gate_fn": "hard_sigmoid"}, (), 6),
    ("rnn", {}, (3,), 7),
    ("irnn", {}, (2,), 6),
    ("ln_lstm", {}, (3,), 7),
    ("ln_lstm", {"use_bias": False, "ln_eps": 1e-3}, (2, 2), 5),
    ("indrnn", {}, (3,), 7),
    ("indrnn", {"activation": "tanh", "use_bias": False}, (), 6),
]
FAST_MODULES = {LSTMCell: fast_lstm, GRUCell: fast_gru, ElmanCell: fast_elman,
                LNLSTMCell: fast_ln_lstm, IndRNNCell: fast_indrnn}


def _case_id(case):
    name, opts, batch, T = case
    return name + "".join(f"-{k}={v}" for k, v in opts.items()) + f"-B{batch}-T{T}"


def _problem(cell, batch, T, D=3, seed=0):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: cell.init(k, D), jax.random.key(0))
    params = jax.tree.map(lambda a: jnp.asarray(0.7 * rng.normal(size=a.shape)), shapes)
    carry = jax.tree.map(
        lambda a: jnp.asarray(0.8 * rng.normal(size=a.shape)), cell.initial_carry(params, batch)
    )
    xs = jnp.asarray(rng.normal(size=(T, *batch, D)))
    valid = jnp.asarray(rng.random((T, *batch)) < 0.75)
    reset = jnp.asarray(rng.random((T, *batch)) < 0.2)
    return params, carry, xs, valid, reset


def _value_and_grads(cell, valid, reset, return_carries):
    """One jitted program: (loss, outputs) and gradients, fast loop and reference loop."""
    reference = lambda *a, **k: Cell.reference_recur_scan(cell, *a, **k)  # noqa: E731

    def loss(scan, params, carry, xs):
        out = scan(params, carry, cell.project(params, xs), valid, reset,
                   return_carries=return_carries)
        final, ys = out[0], out[1]
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        total = jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final))
        if return_carries:
            total = total + sum(0.3 * jnp.sum(c * c) for c in jax.tree.leaves(out[2]))
        return total, out

    def both(params, carry, xs):
        vg = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)
        return vg(cell.recur_scan, params, carry, xs), vg(reference, params, carry, xs)

    return fast_compile_jit(both)


def _assert_close(a, b, tol=TOL):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(la, lb, strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_fast_equals_reference(x64, case):
    name, opts, batch, T = case
    cell = lj.cells.make(name, 4, dtype="float64", **opts)
    params, carry, xs, valid, reset = _problem(cell, batch, T)
    module = FAST_MODULES[type(cell)]
    assert module.applies(cell, type(cell), params, carry, cell.project(params, xs))

    # masks, resets and per-step carries everywhere; the plain call for one case per family
    settings = [((valid, reset), True)]
    if not opts:
        settings.append(((None, None), False))
    for masks, carries in settings:
        fast_result, ref_result = _value_and_grads(cell, *masks, carries)(params, carry, xs)
        _assert_close(fast_result, ref_result)


def _reference(cell):
    """The same cell with the reference loop (no fast path)."""
    cls = type("Reference", (type(cell),), {"recur_scan": Cell.reference_recur_scan})
    return cls(**{f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)})


@pytest.mark.parametrize("name", ["lstm", "gru", "ln_lstm"])
def test_scan_lengths_resets_reverse(x64, name):
    """Through ``lj.scan`` (batch-major) with ``seq_lengths``, ``resets`` and ``reverse``."""
    cell = lj.cells.make(name, 5, dtype="float64")
    ref = _reference(cell)
    B, T, D = 4, 6, 3
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: a * 1.5, cell.init(jax.random.key(0), D))
    xs = jnp.asarray(rng.normal(size=(B, T, D)))
    lengths = jnp.asarray([6, 0, 3, 5])
    resets = jnp.asarray(rng.random((B, T)) < 0.3)
    carry = jax.tree.map(lambda a: a + 0.5, cell.initial_carry(params, (B,)))

    def loss(c, params, carry, xs, reverse):
        ys, final = lj.scan(c, params, xs, carry, seq_lengths=lengths, resets=resets,
                            reverse=reverse)
        w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(w * ys) + sum(jnp.sum(f**2) for f in jax.tree.leaves(final))

    @fast_compile_jit
    def all_results(params, carry, xs):
        grad = jax.value_and_grad(loss, argnums=(1, 2, 3))
        return [[grad(c, params, carry, xs, rev) for c in (cell, ref)] for rev in (False, True)]

    for fast_result, ref_result in all_results(params, carry, xs):
        _assert_close(fast_result, ref_result)


def test_vmapped_seeds_equal_reference(x64):
    """vmap over per-seed parameters (how training sweeps run) keeps the fast path exact."""
    cell = lj.cells.make("lstm", 4, dtype="float64")
    keys = jax.random.split(jax.random.key(2), 3)
    params = jax.vmap(lambda k: cell.init(k, 2))(keys)
    xs = jax.random.normal(jax.random.key(3), (5, 2, 2), jnp.float64)

    def loss(p, c):
        ys, _ = lj.scan(c, p, xs, time_major=True)
        return jnp.sum(jnp.tanh(ys) * jnp.arange(ys.shape[-1]))

    g = fast_compile_jit(lambda p: [jax.vmap(jax.grad(loss), (0, None))(p, c)
                                    for c in (cell, _reference(cell))])
    _assert_close(*g(params))


@pytest.mark.parametrize("opts", [{"full_gate_recurrence": True}, {"proj_size": 2}])
def test_uncovered_options_fall_back(opts):
    cell = lj.cells.make("lstm", 4, **opts)
    params = cell.init(jax.random.key(0), 3)
    carry = cell.initial_carry(params, (2,))
    xp = cell.project(params, jnp.ones((5, 2, 3)))
    assert not fast_lstm.applies(cell, LSTMCell, params, carry, xp)
    _assert_close(jax.jit(cell.recur_scan)(params, carry, xp),
                  jax.jit(lambda *a: Cell.reference_recur_scan(cell, *a))(params, carry, xp), tol=0)


def test_subclass_with_own_recur_falls_back():
    """A subclass that changes ``recur`` must not be run by the LSTM kernel."""

    @dataclasses.dataclass(frozen=True)
    class Leaky(LSTMCell):
        def recur(self, params, carry, xp):
            (h, c), y = super().recur(params, carry, xp)
            return (h, 0.5 * c), y

    cell = Leaky(4)
    params = cell.init(jax.random.key(0), 3)
    carry = cell.initial_carry(params, (2,))
    xp = cell.project(params, jnp.ones((5, 2, 3)))
    assert not fast_lstm.applies(cell, LSTMCell, params, carry, xp)
    _assert_close(jax.jit(cell.recur_scan)(params, carry, xp),
                  jax.jit(lambda *a: Cell.reference_recur_scan(cell, *a))(params, carry, xp), tol=0)


def test_bfloat16_keeps_dtypes():
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3)).astype(jnp.bfloat16)
    cells = [lj.cells.make(name, 8, dtype="bfloat16") for name in ("lstm", "gru", "rnn")]
    params = [c.init(jax.random.key(0), 3) for c in cells]

    @jax.jit
    def run(params):
        return [(lj.scan(c, p, xs), lj.scan(_reference(c), p, xs))
                for c, p in zip(cells, params, strict=True)]

    for (ys, final), (ys_ref, final_ref) in run(params):
        assert ys.dtype == jnp.bfloat16
        assert jax.tree.map(lambda a: a.dtype, final) == jax.tree.map(
            lambda a: a.dtype, final_ref)
        np.testing.assert_allclose(np.asarray(ys, np.float32), np.asarray(ys_ref, np.float32),
                                   atol=0.05)


def test_mixed_dtypes_fall_back():
    cell = lj.cells.make("gru", 4)
    params = cell.init(jax.random.key(0), 3)
    carry = cell.initial_carry(params, (2,)).astype(jnp.bfloat16)
    xp = cell.project(params, jnp.ones((5, 2, 3)))
    assert not fast_gru.applies(cell, GRUCell, params, carry, xp)
    assert fast.same_float_dtype(params["W_h"], xp)


# ---- the inference path ------------------------------------------------------------------
INFERENCE_FAMILIES = ["lstm", "peephole", "gru", "rnn", "ln_lstm", "indrnn"]


def _primal_stacked_outputs(fn, *args):
    """Per-step outputs stacked by each scan in the custom-VJP primal of ``fn``'s program."""
    counts = []
    for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns:
        if eqn.primitive.name == "custom_vjp_call":
            inner = eqn.params["call_jaxpr"].jaxpr
            counts += [len(e.outvars) - e.params["num_carry"] for e in inner.eqns
                       if e.primitive.name == "scan"]
    return counts


@pytest.mark.parametrize("lengths", [None, [5, 0, 3]], ids=["full", "seq_lengths"])
@pytest.mark.parametrize("name", INFERENCE_FAMILIES)
def test_inference_equals_training_forward(name, lengths):
    """Outside ``jax.grad`` the loop runs the custom VJP's lean primal (it stacks ``ys``
    only); its outputs are those of the forward a gradient runs. The two are compiled apart,
    so they agree to a few ulps, not bitwise (tests/_tolerance.py)."""
    cell = lj.cells.make(name, 8)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 5, 2))
    lengths = None if lengths is None else jnp.asarray(lengths)

    def infer(p):
        return lj.scan(cell, p, xs, seq_lengths=lengths, return_carries=True)

    def train(p):
        out, vjp = jax.vjp(infer, p)
        return out, vjp(jax.tree.map(jnp.ones_like, out))  # the residuals are used

    def run(fn):
        return jax.jit(fn)(params)

    inferred, (trained, _) = run(infer), run(train)
    assert jax.tree.structure(inferred) == jax.tree.structure(trained)
    assert_same_math(inferred, trained)


@pytest.mark.parametrize("name", INFERENCE_FAMILIES)
def test_inference_stacks_only_the_outputs(name):
    """The primal (what runs without a gradient) stacks ``ys`` and nothing else: no gate
    activations, no per-step carries (the residuals only ``jax.grad`` needs)."""
    cell = lj.cells.make(name, 8)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((3, 5, 2))
    for lengths in (None, jnp.asarray([5, 0, 3])):
        assert _primal_stacked_outputs(
            lambda p, lengths=lengths: lj.scan(cell, p, xs, seq_lengths=lengths), params
        ) == [1]
