"""minGRU, minLSTM and LRU: the parallel (associative-scan) mode equals the sequential mode.

Outputs, final carry, per-step carries and gradients (params, initial carry, inputs)
agree in float64 to 1e-10, with masks and resets; plus registry, init and errors.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _xla import jit as fast_compile_jit

import lstmjax as lj
from lstmjax.cells.parallel import LRUCell, MinGRUCell, MinLSTMCell

TOL = 1e-10
# (name, options, batch shape, T); every case runs with masks and resets; minGRU also
# from an exactly zero initial carry (log space), LRU also without masks.
CASES = [
    ("mingru", {}, (3,), 6),
    ("mingru", {"log_space": False}, (2, 2), 6),
    ("minlstm", {}, (2,), 5),
    ("minlstm", {"log_space": False, "use_bias": False}, (), 7),
    ("lru", {}, (3,), 9),
    ("lru", {"state_size": 6, "r_min": 0.4, "r_max": 0.9}, (2,), 7),
]


def _case_id(case):
    name, opts, batch, T = case
    return name + "".join(f"-{k}={v}" for k, v in opts.items()) + f"-B{batch}-T{T}"


def _assert_close(a, b, tol=TOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=tol)


def _parallel_and_sequential(cell, valid, reset, zero_carry):
    seq = dataclasses.replace(cell, mode="sequential")

    def loss(c, params, carry, xs):
        out = c.recur_scan(params, carry, c.project(params, xs), valid, reset,
                           return_carries=True)
        final, ys, carries = out
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        total = jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(final))
        return total + sum(0.3 * jnp.sum(x * x) for x in jax.tree.leaves(carries)), out

    @fast_compile_jit
    def both(params, carry, xs):
        if zero_carry:
            carry = jax.tree.map(jnp.zeros_like, carry)
        vg = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)
        return vg(cell, params, carry, xs), vg(seq, params, carry, xs)

    return both


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_parallel_equals_sequential(x64, case):
    name, opts, batch, T = case
    cell = lj.cells.make(name, 5, dtype="float64", mode="parallel", **opts)
    D = 5 if name == "lru" and not opts else 3  # LRU: diagonal skip D when D == H
    rng = np.random.default_rng(len(_case_id(case)))
    params = cell.init(jax.random.key(0), D)
    carry = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)),
                         cell.initial_carry(params, batch))
    xs = jnp.asarray(rng.normal(size=(T, *batch, D)))
    valid = jnp.asarray(rng.random((T, *batch)) < 0.75)
    reset = jnp.asarray(rng.random((T, *batch)) < 0.2)
    settings = [((valid, reset), False)]
    if case == CASES[0]:
        settings.append(((valid, reset), True))
    if case == CASES[4]:
        settings.append(((None, None), False))
    for masks, zero in settings:
        par, seq = _parallel_and_sequential(cell, *masks, zero)(params, carry, xs)
        _assert_close(par, seq)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(par))


def test_scan_engine_with_lengths_and_reverse():
    """Through ``lj.scan``: padding, reverse and resets, parallel vs sequential."""
    B, T, D = 3, 7, 2
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.asarray([7, 2, 5])
    resets = jax.random.bernoulli(jax.random.key(2), 0.3, (B, T))
    cells = [lj.cells.make(n, 4, mode="parallel") for n in ("mingru", "minlstm", "lru")]
    params = [c.init(jax.random.key(0), D) for c in cells]

    @fast_compile_jit
    def run(params):
        return [
            [lj.scan(dataclasses.replace(c, mode=m), p, xs, seq_lengths=lengths, resets=resets,
                     reverse=rev) for m in ("parallel", "sequential")]
            for c, p in zip(cells, params, strict=True) for rev in (False, True)
        ]

    for par, seq in run(params):
        _assert_close(par, seq, tol=1e-5)


def test_registered_and_protocol():
    assert {"mingru", "minlstm", "lru"} <= set(lj.cells.names())
    assert lj.cells.make("mingru", 4).mode == "auto"  # parallel off CPU, sequential on CPU
    for name, cls in (("mingru", MinGRUCell), ("minlstm", MinLSTMCell), ("lru", LRUCell)):
        cell = lj.cells.make(name, 6)
        assert isinstance(cell, cls) and cell.output_size == 6
        params = cell.init(jax.random.key(0), 3)
        carry = cell.initial_carry(params, (2,))
        x = jnp.ones((2, 3))
        carry2, y = cell.step(params, carry, x)
        assert y.shape == (2, 6)
        assert jax.tree.structure(carry2) == jax.tree.structure(carry)


def test_lru_ring_init():
    cell = lj.cells.make("lru", 64, r_min=0.5, r_max=0.95, max_phase=1.0)
    p = cell.init(jax.random.key(3), 64)
    modulus = np.exp(-np.exp(np.asarray(p["nu_log"])))
    assert np.all((modulus >= 0.5 - 1e-6) & (modulus <= 0.95 + 1e-6))
    assert np.all(np.exp(np.asarray(p["theta_log"])) <= 1.0 + 1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(p["gamma_log"])), np.sqrt(1 - modulus**2),
                               rtol=1e-5)
    assert p["D"].shape == (64,)  # the paper's diagonal skip when input_size == hidden_size
    assert cell.init(jax.random.key(3), 3)["D"].shape == (3, 64)  # dense skip otherwise


@pytest.mark.parametrize("bad, match", [
    ({"mode": "fast"}, "mode"),
    ({"r_min": 0.9, "r_max": 0.5}, "r_min"),
    ({"state_size": -1}, "state_size"),
])
def test_errors_name_the_option(bad, match):
    name = "mingru" if set(bad) == {"mode"} else "lru"
    with pytest.raises(ValueError, match=match):
        lj.cells.make(name, 4, **bad)
