"""Parity with Flax's ``nn.RNN``/``nn.Bidirectional``, and the linen/nnx wrappers in training."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
import pytest
from _tolerance import assert_same_math
from flax import linen as nn
from flax import nnx

import lstmjax as lj
from lstmjax import cells
from lstmjax.interop.flax import NNXRNN, LinenRNN

B, T, D, H = 3, 6, 3, 4
LENGTHS = jnp.array([T, 2, 4])
TOL = 1e-12
_scan = jax.jit(lj.scan, static_argnums=0, static_argnames=("reverse",))  # compiles are the cost


def _lstm_params(p):
    """flax ``LSTMCell`` params -> lstmjax LSTM params (same i, f, g, o order)."""
    return {
        "W_x": jnp.concatenate([p[f"i{g}"]["kernel"] for g in "ifgo"], axis=1),
        "W_h": jnp.concatenate([p[f"h{g}"]["kernel"] for g in "ifgo"], axis=1),
        "b": jnp.concatenate([p[f"h{g}"]["bias"] for g in "ifgo"]),
    }


def _gru_params(p):
    """flax ``GRUCell`` params -> lstmjax GRU params (reset after the matmul, as torch)."""
    return {
        "W_x": jnp.concatenate([p[f"i{g}"]["kernel"] for g in "rzn"], axis=1),
        "W_h": jnp.concatenate([p[f"h{g}"]["kernel"] for g in "rzn"], axis=1),
        "b": jnp.concatenate([p[f"i{g}"]["bias"] for g in "rzn"]),
        "b_hn": p["hn"]["bias"],
    }


FLAX_CELLS = {
    "lstm": (nn.LSTMCell, _lstm_params, lambda c: (c[1], c[0])),  # flax carries (c, h)
    "gru": (nn.GRUCell, _gru_params, lambda c: c),
}


def _valid(a):
    """Zero the padded steps (flax leaves them unspecified; lstmjax zeros them)."""
    return jnp.where((jnp.arange(T) < LENGTHS[:, None])[..., None], a, 0)


def _err(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def flax_parity_errors():
    """Max abs errors (float64) of lj.scan / lj.RNN against flax, per case."""
    xs = jax.random.normal(jax.random.key(0), (B, T, D), jnp.float64)
    big = nn.initializers.normal(0.5)  # away from the linear regime; cheaper than orthogonal
    errors = {}
    for name, (flax_cell, convert, carry_of) in FLAX_CELLS.items():
        cell = cells.make(name, H, dtype="float64")
        make = lambda flax_cell=flax_cell: nn.RNN(flax_cell(
            H, param_dtype=jnp.float64, kernel_init=big, recurrent_kernel_init=big, bias_init=big
        ))
        rnn = make()
        init = jax.jit(rnn.init)
        variables = init(jax.random.key(1), xs)
        params = convert(variables["params"]["cell"])
        if name == "lstm":  # one direction alone (the GRU runs both inside Bidirectional)
            carry, ys = jax.jit(functools.partial(
                rnn.apply, return_carry=True, reverse=True, keep_order=True
            ))(variables, xs, seq_lengths=LENGTHS)
            ys2, carry2 = _scan(cell, params, xs, seq_lengths=LENGTHS, reverse=True)
            errors[f"{name}-reverse"] = _err((_valid(ys), carry_of(carry)), (ys2, carry2))
        bi = nn.Bidirectional(make(), make())  # separate cells: a shared one shares params
        backward = init(jax.random.key(2), xs)["params"]
        bi_vars = {"params": {"forward_rnn": variables["params"], "backward_rnn": backward}}
        (c_f, c_b), ys = jax.jit(functools.partial(bi.apply, return_carry=True))(
            bi_vars, xs, seq_lengths=LENGTHS
        )
        net = lj.RNN(cell, bidirectional=True)
        net_params = [[params, convert(backward["cell"])]]
        ys2, [[c_f2, c_b2]] = jax.jit(net.apply)(net_params, xs, seq_lengths=LENGTHS)
        errors[f"{name}-bidirectional"] = _err((_valid(ys), carry_of(c_f), carry_of(c_b)),
                                               (ys2, c_f2, c_b2))
    return errors


def test_parity_with_flax_rnn_and_bidirectional(x64):
    errors = flax_parity_errors()
    assert max(errors.values()) <= TOL, errors


# ---- the wrappers ----------------------------------------------------------------------
def test_linen_wrapper_params_are_lstmjax_params_and_it_trains():
    net = lj.RNN(cells.make("gru", H), recurrent_dropout=0.2)
    xs = jax.random.normal(jax.random.key(3), (B, T, D))
    target = jax.random.normal(jax.random.key(4), (B, T, 1))

    class Model(nn.Module):
        @nn.compact
        def __call__(self, xs, train):
            ys, _ = LinenRNN(net)(xs, seq_lengths=LENGTHS, deterministic=not train)
            return nn.Dense(1)(ys)

    model = Model()
    variables = jax.jit(model.init, static_argnums=2)(jax.random.key(5), xs, False)
    rnn_params = variables["params"]["LinenRNN_0"]["rnn"]
    assert jax.tree.structure(rnn_params) == jax.tree.structure(net.init(jax.random.key(0), D))
    both = jax.jit(lambda p: (
        LinenRNN(net).apply({"params": {"rnn": p}}, xs, seq_lengths=LENGTHS),
        net.apply(p, xs, seq_lengths=LENGTHS),
    ))
    wrapped, direct = both(rnn_params)
    assert_same_math(wrapped, direct)  # two programs, one arithmetic

    opt = optax.adam(1e-2)
    train_out = jax.jit(lambda p, key: model.apply({"params": p}, xs, True, rngs={"dropout": key}))

    @jax.jit
    def step(params, opt_state, key):
        loss = lambda p: jnp.mean((train_out(p, key) - target) ** 2)
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state = variables["params"], opt.init(variables["params"])
    losses = []
    for i in range(8):
        params, opt_state, value = step(params, opt_state, jax.random.key(i))
        losses.append(float(value))
    assert losses[-1] < losses[0]
    # dropout is drawn from the "dropout" rng: different keys, different outputs
    out_a, out_b = train_out(params, jax.random.key(0)), train_out(params, jax.random.key(1))
    assert float(jnp.abs(out_a - out_b).max()) > 0


def test_linen_wrapper_runs_a_cell():
    cell = cells.make("lstm", H)
    layer = LinenRNN(cell)
    xs = jax.random.normal(jax.random.key(6), (B, T, D))
    variables = jax.jit(layer.init)(jax.random.key(7), xs)
    assert set(variables["params"]) == {"cell"}
    wrapped, direct = jax.jit(lambda v: (
        layer.apply(v, xs, seq_lengths=LENGTHS),
        lj.scan(cell, v["params"]["cell"], xs, seq_lengths=LENGTHS),
    ))(variables)
    assert_same_math(wrapped, direct)  # two programs, one arithmetic


def test_nnx_wrapper_trains_with_optax_and_respects_eval():
    net = lj.RNN(cells.make("lstm", H), recurrent_dropout=0.25)
    layer = NNXRNN(net, D, rngs=nnx.Rngs(params=0, dropout=1))
    plain = layer.lstmjax_params()
    assert jax.tree.structure(plain) == jax.tree.structure(net.init(jax.random.key(0), D))
    xs = jax.random.normal(jax.random.key(8), (B, T, D))
    target = jax.random.normal(jax.random.key(9), (B, T, H))
    optimizer = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(layer, optimizer):
        def loss(layer):
            ys, _ = layer(xs, seq_lengths=LENGTHS)
            return jnp.mean((ys - target) ** 2)

        value, grads = nnx.value_and_grad(loss)(layer)
        optimizer.update(layer, grads)
        return value

    losses = [float(step(layer, optimizer)) for _ in range(8)]
    assert losses[-1] < losses[0]
    assert _err(layer.lstmjax_params(), plain) > 0  # the params moved

    call = nnx.jit(lambda layer: layer(xs, seq_lengths=LENGTHS))
    a, _ = call(layer)
    b, _ = call(layer)
    assert float(jnp.abs(a - b).max()) > 0  # fresh masks per call from the dropout stream
    layer.eval()
    ys, carries = call(layer)
    direct = jax.jit(net.apply)(layer.lstmjax_params(), xs, seq_lengths=LENGTHS)
    assert_same_math((ys, carries), direct)  # nnx.jit vs jax.jit: compiled apart
    training_view = nnx.view(layer, deterministic=False)
    assert layer.deterministic and not training_view.deterministic


def test_wrappers_reject_other_models():
    with pytest.raises(TypeError, match="LinenRNN wraps an lstmjax cell or .*; got 'lstm'"):
        LinenRNN("lstm").init(jax.random.key(0), jnp.ones((1, 2, 3)))
    with pytest.raises(TypeError, match="NNXRNN wraps an lstmjax cell"):
        NNXRNN(functools.partial(int), 3, rngs=nnx.Rngs(0))
