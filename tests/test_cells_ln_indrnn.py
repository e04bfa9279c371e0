"""The layer-normalised LSTM/GRU and the IndRNN against NumPy float64 implementations of their
papers' equations: outputs and final carries through ``lj.scan`` (fast path where there is one),
gradients of every parameter, the initial carry and the inputs against central finite
differences of the NumPy loss; LN's invariance to rescaling the weights; IndRNN's init and
its ``|u| <= 2^{1/T}`` bound, held after every update of a short training run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax import cells

H, D, B, T = 3, 2, 2, 5
FD_EPS = 1e-6


# ---------------------------------------------------------------- NumPy oracles (float64)
def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ln(a, alpha, beta=None, eps=1e-5):
    mu = a.mean(-1, keepdims=True)
    var = ((a - mu) ** 2).mean(-1, keepdims=True)
    out = alpha * (a - mu) / np.sqrt(var + eps)
    return out if beta is None else out + beta


def np_ln_lstm(P, carry, xs_BTD, eps):
    """Ba et al. 2016, appendix: z = LN(x W_x) + LN(h W_h) + b; h' = o tanh(LN(c'))."""
    h, c = carry
    b = P.get("b", 0.0)
    ys = []
    for t in range(xs_BTD.shape[1]):
        z = _ln(xs_BTD[:, t] @ P["W_x"], P["alpha_x"], eps=eps) + \
            _ln(h @ P["W_h"], P["alpha_h"], eps=eps) + b
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        h = _sig(o) * np.tanh(_ln(c, P["alpha_c"], P.get("beta_c"), eps))
        ys.append(h)
    return np.stack(ys, 1), (h, c)


def np_ln_gru(P, h, xs_BTD, eps):
    b, b_hn = P.get("b", 0.0), P.get("b_hn", 0.0)
    ys = []
    for t in range(xs_BTD.shape[1]):
        xp = _ln(xs_BTD[:, t] @ P["W_x"], P["alpha_x"], eps=eps) + b
        hh = _ln(h @ P["W_h"], P["alpha_h"], eps=eps)
        (x_r, x_z, x_n), (h_r, h_z, h_n) = np.split(xp, 3, -1), np.split(hh, 3, -1)
        r, z = _sig(x_r + h_r), _sig(x_z + h_z)
        n = np.tanh(x_n + r * (h_n + b_hn))
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys, 1), h


def np_indrnn(P, h, xs_BTD, act):
    ys = []
    for t in range(xs_BTD.shape[1]):
        h = act(xs_BTD[:, t] @ P["W_x"] + P["u"] * h + P.get("b", 0.0))
        ys.append(h)
    return np.stack(ys, 1), h


ORACLES = {
    "ln_lstm": lambda cell, P, c, xs: np_ln_lstm(P, c, xs, cell.ln_eps),
    "ln_gru": lambda cell, P, c, xs: np_ln_gru(P, c, xs, cell.ln_eps),
    "indrnn": lambda cell, P, c, xs: np_indrnn(
        P, c, xs, {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[cell.activation]),
}
CASES = [
    ("ln_lstm", {}),
    ("ln_lstm", {"use_bias": False, "ln_eps": 1e-2}),
    ("ln_gru", {}),
    ("indrnn", {}),
    ("indrnn", {"activation": "tanh", "use_bias": False}),
]


def _problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: cell.init(k, D), jax.random.key(0))
    params = {k: 0.8 * rng.normal(size=v.shape) for k, v in shapes.items()}
    carry = jax.tree.map(lambda a: 0.5 * rng.normal(size=a.shape),
                         cell.initial_carry(params, (B,)))
    xs = rng.normal(size=(B, T, D))
    return params, carry, xs


def _weights(shape):
    return np.cos(np.arange(np.prod(shape))).reshape(shape)


def _np_loss(name, cell, P, carry, xs):
    ys, final = ORACLES[name](cell, P, carry, xs)
    return np.sum(_weights(ys.shape) * ys) + sum(np.sum(np.sin(f)) for f in jax.tree.leaves(final))


@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_forward_and_gradients_match_numpy(x64, name, opts):
    cell = cells.make(name, H, dtype="float64", **opts)
    params, carry, xs = _problem(cell)

    def loss(p, c, x):
        ys, final = lj.scan(cell, p, x, c)
        w = jnp.asarray(_weights(ys.shape))
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(final)), \
            (ys, final)

    to_jax = lambda t: jax.tree.map(jnp.asarray, t)  # noqa: E731
    (value, (ys, final)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2),
                                                             has_aux=True))(
        to_jax(params), to_jax(carry), jnp.asarray(xs))
    ys_np, final_np = ORACLES[name](cell, params, carry, xs)
    np.testing.assert_allclose(np.asarray(ys), ys_np, rtol=0, atol=1e-12)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(final_np), strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-12)

    # every leaf's gradient: its directional derivative along a random direction vs central
    # finite differences of the NumPy loss
    primal = (params, carry, xs)
    leaves, treedef = jax.tree.flatten(primal)
    grad_leaves = jax.tree.leaves(grads)
    rng = np.random.default_rng(1)
    for k, (leaf, g) in enumerate(zip(leaves, grad_leaves, strict=True)):
        v = rng.normal(size=np.shape(leaf))

        def shifted(s, k=k, v=v):
            moved = [a + s * v if j == k else a for j, a in enumerate(leaves)]
            return _np_loss(name, cell, *jax.tree.unflatten(treedef, moved))

        fd = (shifted(FD_EPS) - shifted(-FD_EPS)) / (2 * FD_EPS)
        np.testing.assert_allclose(np.sum(np.asarray(g) * v), fd, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{name} leaf {k}")


@pytest.mark.parametrize("name", ["ln_lstm", "ln_gru"])
def test_ln_output_invariant_to_rescaling_the_weights(x64, name):
    """LN(s·a) = LN(a) for s > 0 (up to ε, here 1e-12): W_x and W_h may be rescaled."""
    cell = cells.make(name, H, dtype="float64", ln_eps=1e-12)
    params, carry, xs = _problem(cell, seed=2)
    params, xs = jax.tree.map(jnp.asarray, params), jnp.asarray(xs)
    scaled = {**params, "W_x": 3.7 * params["W_x"], "W_h": 0.29 * params["W_h"]}
    run = jax.jit(lambda p: lj.scan(cell, p, xs)[0])
    ys, ys_scaled = run(params), run(scaled)
    np.testing.assert_allclose(np.asarray(ys_scaled), np.asarray(ys), rtol=0, atol=1e-9)
    assert np.max(np.abs(np.asarray(run({**params, "W_x": -params["W_x"]}) - ys))) > 1e-3


def test_ln_lstm_init_and_options():
    cell = cells.make("ln_lstm", 4, forget_bias=1.0)
    p = cell.init(jax.random.key(0), 3)
    assert {k: v.shape for k, v in p.items()} == {
        "W_x": (3, 16), "W_h": (4, 16), "b": (16,), "alpha_x": (16,), "alpha_h": (16,),
        "alpha_c": (4,), "beta_c": (4,)}
    np.testing.assert_array_equal(p["b"][4:8], 1.0)
    for k in ("alpha_x", "alpha_h", "alpha_c"):
        np.testing.assert_array_equal(p[k], 1.0)
    np.testing.assert_array_equal(p["beta_c"], 0.0)
    chrono = cells.make("ln_lstm", 4, chrono=50.0).init(jax.random.key(0), 3)["b"]
    np.testing.assert_allclose(chrono[:4], -chrono[4:8])
    assert sorted(cells.make("ln_gru", 4).init(jax.random.key(0), 3)) == [
        "W_h", "W_x", "alpha_h", "alpha_x", "b", "b_hn"]
    with pytest.raises(ValueError, match="ln_eps"):
        cells.make("ln_lstm", 4, ln_eps=0.0)
    with pytest.raises(ValueError, match="forget_bias"):
        cells.make("ln_lstm", 4, forget_bias=1.0, use_bias=False)


def test_indrnn_init_bound_and_constrain():
    bound = 2.0 ** (1 / 100)
    cell = cells.make("indrnn", 64, t_max=100)
    assert cell.bound == pytest.approx(bound)
    p = cell.init(jax.random.key(0), 3)
    assert float(p["u"].min()) >= 0 and float(p["u"].max()) <= bound
    assert float(p["u"].max()) > 0.9  # U(0, bound), not a point mass
    assert float(jnp.std(p["W_x"])) < 3e-3 and not np.any(np.asarray(p["b"]))  # the presets
    free = cells.make("indrnn", 64).init(jax.random.key(0), 3)["u"]
    assert 0 <= float(free.min()) and float(free.max()) <= 1  # U(0, 1) without a bound
    clipped = cell.constrain({**p, "u": jnp.asarray(np.linspace(-3, 3, 64), jnp.float32)})
    np.testing.assert_allclose(clipped["u"], np.clip(np.linspace(-3, 3, 64), -bound, bound),
                               rtol=1e-6)
    assert clipped["W_x"] is p["W_x"]
    assert cells.make("indrnn", 4, recurrent_max=0.5).bound == 0.5
    unbounded = cells.make("indrnn", 4)
    assert unbounded.constrain(p) is p and cells.make("lstm", 4).constrain(p) is p
    with pytest.raises(ValueError, match="either recurrent_max or t_max"):
        cells.make("indrnn", 4, recurrent_max=1.0, t_max=10)
    with pytest.raises(ValueError, match="recurrent_init"):
        cells.make("indrnn", 4, recurrent_init="orthogonal")


def test_indrnn_bound_holds_after_every_training_update():
    """``train_step`` applies ``Model.constrain`` after each optimiser update (with the layer
    options on too: zoneout, weight drop and a learned initial carry); ``t_max`` sets the same
    bound as ``recurrent_max = 2^{1/t_max}`` (test above)."""
    from lstmjax.experiment.config import from_dict
    from lstmjax.train import make_trainer

    cfg = from_dict({
        "name": "t",
        "task": {"name": "adding", "length": 6},
        "model": {"cell": "indrnn", "hidden_size": 8, "options": {"recurrent_max": 0.05},
                  "zoneout": 0.1, "weight_drop": 0.2, "learn_initial_carry": True},
        "train": {"steps": 6, "eval_every": 1, "batch_size": 4, "eval_batch_size": 4,
                  "learning_rate": 0.3, "early_stop": False, "grad_clip": None},
    })
    trainer = make_trainer(cfg)
    bound = 0.05  # small, so that Adam's ~0.3 steps push u past it
    state = trainer.init(jax.random.PRNGKey(0))
    chunk = jax.jit(trainer.chunk)
    hit = False
    for _ in range(trainer.num_chunks):  # one update per chunk
        state, _ = chunk(state)
        u = np.abs(np.asarray(state.params["rnn"][0][0]["u"]))
        assert u.max() <= bound * (1 + 1e-6)
        hit |= bool(np.isclose(u.max(), bound))
    assert int(state.updates) == 6 and hit  # the bound was reached and held
    assert "initial_carry" in state.params["rnn"][0][0]
