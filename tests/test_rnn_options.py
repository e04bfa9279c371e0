"""``lj.RNN`` layer options: zoneout, weight drop (DropConnect on W_h), a learned initial carry,
and ``fast=False`` for forward-mode autodiff. Oracles: the expectation formulas stepped in
Python, masks read back off the outputs (fresh per step for zoneout; one W̃_h for all steps
for weight drop, recovered by least squares), finite differences for ``jax.jvp``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tolerance import assert_same_math

import lstmjax as lj
from lstmjax import cells
from lstmjax.experiment.schema import ModelConfig
from lstmjax.train.model import make_model

H, D, B, T = 3, 2, 2, 5


def _xs(shape=(B, T, D), seed=1, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _params(net, seed=0, scale=0.8):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: net.init(k, D), jax.random.key(0))
    return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape)), shapes)


# ---------------------------------------------------------------- zoneout
@pytest.mark.parametrize(("name", "zoneout"), [("lstm", (0.5, 0.2)), ("gru", 0.3),
                                               ("ln_lstm", 0.25)])
def test_zoneout_evaluation_is_the_expectation(x64, name, zoneout):
    """Deterministic: c_t = z c_{t-1} + (1 - z) c̃_t per leaf, y = the zoned h; with lengths."""
    cell = cells.make(name, H, dtype="float64")
    net = lj.RNN(cell, zoneout=zoneout)
    params = _params(net)
    xs, lengths = _xs(), np.array([T, 3])
    ys, carries = jax.jit(lambda p: net.apply(p, xs, seq_lengths=lengths))(params)
    z_c, z_h = zoneout if isinstance(zoneout, tuple) else (zoneout, zoneout)
    step = jax.jit(cell.step)
    for b in range(B):
        carry = cell.initial_carry(params[0][0], ())
        for t in range(lengths[b]):
            new, _ = step(params[0][0], carry, xs[b, t])
            if isinstance(carry, tuple):
                carry = (z_h * carry[0] + (1 - z_h) * new[0], z_c * carry[1] + (1 - z_c) * new[1])
                h = carry[0]
            else:
                carry = h = z_h * carry + (1 - z_h) * new
            np.testing.assert_allclose(ys[b, t], h, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(ys[b, lengths[b]:], 0.0)
        for got, want in zip(jax.tree.leaves(carries[0][0]), jax.tree.leaves(carry), strict=True):
            np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-12)


def test_zoneout_training_masks_are_fresh_every_step():
    """Elman cell: each h_t element is either h_{t-1} (zoned out) or the cell's new value; the
    kept pattern has rate z, differs step to step and is independent across steps."""
    Hb, Bb, Tb, z = 16, 8, 30, 0.3
    cell = cells.make("rnn", Hb)
    net = lj.RNN(cell, zoneout=z)
    params = net.init(jax.random.key(0), D)
    xs = _xs((Bb, Tb, D), dtype=jnp.float32)
    ys = np.asarray(jax.jit(lambda p, k: net.apply(p, xs, key=k)[0])(params, jax.random.key(5)))
    p = params[0][0]
    prev = ys[:, :-1]
    new = np.tanh(np.asarray(cell.project(p, xs))[:, 1:] + prev @ np.asarray(p["W_h"]))
    kept = ys[:, 1:] == prev
    assert np.all(kept | (np.abs(ys[:, 1:] - new) < 1e-5))  # every element is prev or new
    assert abs(kept.mean() - z) < 0.05
    both = (kept[:, 1:] & kept[:, :-1]).mean()
    assert abs(both - z * z) < 0.04  # independent from one step to the next
    assert not np.array_equal(kept[:, 0], kept[:, 1])  # fresh per step
    assert not np.array_equal(kept[0], kept[1])  # and per sequence


def test_zoneout_options_checked():
    assert lj.RNN(cells.make("lstm", H), zoneout=(0.0, 0.0)).zoneout == 0.0
    assert not lj.RNN(cells.make("lstm", H), zoneout=0.0).needs_key
    with pytest.raises(ValueError, match=r"pair \(z_c, z_h\) needs an LSTM-type carry"):
        lj.RNN(cells.make("gru", H), zoneout=(0.1, 0.2))
    with pytest.raises(ValueError, match="zoneout=1.0"):
        lj.RNN(cells.make("gru", H), zoneout=1.0)
    with pytest.raises(ValueError, match="LRUCell"):
        lj.RNN(cells.make("lru", H), zoneout=0.1)


# ---------------------------------------------------------------- weight drop
def test_weight_drop_is_one_mask_for_all_steps_and_sequences(x64):
    """Identity-activation Elman cell: h_t - xp_t = h_{t-1} W̃_h for one W̃_h over every step
    and sequence (least squares fits exactly), with W̃_h ∈ {0, W_h/(1-p)}; a new key (a new
    batch) draws a new mask."""
    Hb, Bb, Tb, rate = 4, 3, 8, 0.5
    cell = cells.make("rnn", Hb, activation="identity", dtype="float64")
    net = lj.RNN(cell, weight_drop=rate)
    params = net.init(jax.random.key(0), D)
    xs = _xs((Bb, Tb, D))
    run = jax.jit(lambda p, k: net.apply(p, xs, key=k)[0])
    p = params[0][0]
    W_h, xp = np.asarray(p["W_h"]), np.asarray(cell.project(p, xs))

    def recovered(key):
        ys = np.asarray(run(params, key))
        prev = ys[:, :-1].reshape(-1, Hb)
        target = (ys[:, 1:] - xp[:, 1:]).reshape(-1, Hb)
        W, *_ = np.linalg.lstsq(prev, target, rcond=None)
        np.testing.assert_allclose(prev @ W, target, rtol=0, atol=1e-9)  # one W̃ fits all
        dropped = np.abs(W) < 1e-9
        np.testing.assert_allclose(W[~dropped], W_h[~dropped] / (1 - rate), rtol=1e-8)
        return dropped

    m1, m2 = recovered(jax.random.key(1)), recovered(jax.random.key(2))
    assert m1.any() and not m1.all() and not np.array_equal(m1, m2)
    assert_same_math(net.apply(params, xs)[0], lj.RNN(cell).apply(params, xs)[0])


def test_weight_drop_on_indrnn_drops_u(x64):
    cell = cells.make("indrnn", 6, activation="identity", dtype="float64")
    net, rate = lj.RNN(cell, weight_drop=0.5), 0.5
    params = net.init(jax.random.key(0), D)
    xs = _xs((3, 6, D))
    ys = np.asarray(net.apply(params, xs, key=jax.random.key(3))[0])
    xp = np.asarray(cell.project(params[0][0], xs))
    u_eff = (ys[:, 1:] - xp[:, 1:]) / ys[:, :-1]
    np.testing.assert_allclose(u_eff, np.broadcast_to(u_eff[0, 0], u_eff.shape), atol=1e-8)
    u = np.asarray(params[0][0]["u"])
    assert np.all(np.isclose(u_eff[0, 0], 0) | np.isclose(u_eff[0, 0], u / (1 - rate)))
    with pytest.raises(ValueError, match="no recurrent weights"):
        lj.RNN(cells.make("mingru", H), weight_drop=0.1)


def test_rates_zero_equal_the_plain_layer():
    cell = cells.make("lstm", H)
    xs = _xs(dtype=jnp.float32)
    plain = lj.RNN(cell, num_layers=2)
    params = plain.init(jax.random.key(0), D)
    off = lj.RNN(cell, num_layers=2, zoneout=0.0, weight_drop=0.0, dropout=0.2)
    want = plain.apply(params, xs)
    got = off.apply(params, xs)  # evaluation: dropout off too
    assert_same_math(got, want)  # the same arithmetic, traced through other options
    # training (a key) with the pair (0, 0): zoneout is off, the fast path runs
    z_off = lj.RNN(cell, num_layers=2, zoneout=(0.0, 0.0), weight_drop=0.0)
    assert_same_math(z_off.apply(params, xs, key=jax.random.key(0)), want)


# ---------------------------------------------------------------- learned initial carry
def test_learned_initial_carry_is_a_broadcast_parameter(x64):
    cell = cells.make("lstm", H, dtype="float64")
    net = lj.RNN(cell, bidirectional=True, learn_initial_carry=True)
    params = net.init(jax.random.key(0), D)
    assert jax.tree.map(jnp.shape, params[0][1]["initial_carry"]) == ((H,), (H,))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    xs = _xs()
    h0 = params[0][0]["initial_carry"]
    carry_B = jax.tree.map(lambda a: jnp.broadcast_to(a, (B, H)), h0)
    plain = net.cell_params(params)[0][0]
    ys, _ = net.apply(params, xs)
    ys_ref, _ = lj.scan(cell, plain, xs, carry_B)
    np.testing.assert_allclose(ys[..., :H], ys_ref, rtol=0, atol=1e-12)

    g = jax.grad(lambda p: jnp.sum(net.apply(p, xs)[0][..., :H] ** 2))(params)
    g_ref = jax.grad(lambda c: jnp.sum(lj.scan(cell, plain, xs, c)[0] ** 2))(carry_B)
    for a, b in zip(jax.tree.leaves(g[0][0]["initial_carry"]), jax.tree.leaves(g_ref),
                    strict=True):
        np.testing.assert_allclose(a, b.sum(0), rtol=1e-10)  # summed over the batch
    with pytest.raises(ValueError, match="initial_carry"):
        net.apply(net.cell_params(params), xs)


def test_rnn_constrain_applies_each_cell_constraint():
    net = lj.RNN(cells.make("indrnn", 4, recurrent_max=0.5), num_layers=2,
                 learn_initial_carry=True)
    params = net.init(jax.random.key(0), D)
    params[1][0]["u"] = jnp.full((4,), 3.0)
    out = net.constrain(params)
    np.testing.assert_array_equal(out[1][0]["u"], 0.5)
    np.testing.assert_array_equal(out[0][0]["u"], params[0][0]["u"])  # init is within bound
    assert "initial_carry" in out[1][0]


# ---------------------------------------------------------------- forward-mode autodiff
@pytest.mark.parametrize("name", ["lstm", "ln_lstm", "indrnn"])
def test_jvp_through_scan_with_fast_false_equals_finite_differences(x64, name):
    cell = cells.make(name, H, dtype="float64")
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: jnp.asarray(0.8 * rng.normal(size=a.shape)),
                          cell.init(jax.random.key(0), D))
    xs = _xs()
    tangents = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), (params, xs))
    f = lambda p, x: lj.scan(cell, p, x, fast=False)[0]  # noqa: E731
    _, jvp = jax.jvp(f, (params, xs), tangents)
    eps = 1e-6
    shift = lambda s: jax.tree.map(lambda a, t: a + s * t, (params, xs), tangents)  # noqa: E731
    fd = (f(*shift(eps)) - f(*shift(-eps))) / (2 * eps)
    np.testing.assert_allclose(jvp, fd, rtol=0, atol=1e-8)
    with pytest.raises(TypeError, match="fast=False"):
        jax.jvp(lambda x: lj.scan(cell, params, x)[0], (xs,), (tangents[1],))


def test_jacfwd_through_rnn_with_fast_false(x64):
    cell = cells.make("gru", H, dtype="float64")
    xs = _xs()
    slow = lj.RNN(cell, num_layers=2, fast=False)
    params = slow.init(jax.random.key(0), D)
    jac = jax.jacfwd(lambda x: slow.apply(params, x)[0])(xs)
    jac_rev = jax.jacrev(lambda x: lj.RNN(cell, num_layers=2).apply(params, x)[0])(xs)
    np.testing.assert_allclose(jac, jac_rev, rtol=0, atol=1e-12)
    with pytest.raises(TypeError, match="fast=False"):
        jax.jacfwd(lambda x: lj.RNN(cell).apply(params[:1], x)[0])(xs)


# ---------------------------------------------------------------- interop and configs
def test_torch_export_refuses_the_layer_options():
    pytest.importorskip("torch")
    cell = cells.make("lstm", H)
    for opts in ({"zoneout": 0.1}, {"weight_drop": 0.2}, {"learn_initial_carry": True}):
        net = lj.RNN(cell, **opts)
        with pytest.raises(ValueError, match=f"{next(iter(opts))}=.*no torch equivalent"):
            lj.interop.to_torch_state_dict(net, net.init(jax.random.key(0), D))


def test_model_config_passes_the_layer_options():
    cfg = ModelConfig(cell="ln_lstm", hidden_size=4, zoneout=[0.5, 0.05], weight_drop=0.2,
                      learn_initial_carry=True)
    net = make_model(cfg, 2, 1).net
    assert (net.zoneout, net.weight_drop, net.learn_initial_carry) == ((0.5, 0.05), 0.2, True)
    assert net.needs_key


def test_fast_path_runs_unless_zoneout_or_fast_false():
    cell = cells.make("lstm", H)
    xs = _xs(dtype=jnp.float32)

    def uses_fast(net, key=None):
        params = net.init(jax.random.key(0), D)
        jaxpr = jax.make_jaxpr(lambda p: net.apply(p, xs, key=key)[0])(params)
        return "custom_vjp" in str(jaxpr)

    key = jax.random.key(1)
    assert uses_fast(lj.RNN(cell)) and uses_fast(lj.RNN(cell, weight_drop=0.3), key)
    assert uses_fast(lj.RNN(cell, learn_initial_carry=True))
    assert not uses_fast(lj.RNN(cell, fast=False))
    assert not uses_fast(lj.RNN(cell, zoneout=0.1), key)
