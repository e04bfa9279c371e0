"""The scan engine (lengths, resets, reverse, carries) and the RNN layer stack."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lstmjax as lj
from lstmjax import cells

B, T, D, H = 3, 6, 3, 4
ATOL = 1e-5

# Jitted entry points, cached per (cell or net, options, shapes): compiles are the cost here.
_scan = jax.jit(lj.scan, static_argnums=0,
                static_argnames=("reverse", "time_major", "unroll", "return_carries"))
_apply = jax.jit(lambda net, *args, **kw: net.apply(*args, **kw), static_argnums=0,
                 static_argnames=("deterministic", "time_major", "unroll"))


@functools.cache
def _step(cell):
    return jax.jit(cell.step)


def _close(a, b, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=0)


def _tree_close(a, b, atol=ATOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: _close(x, y, atol), a, b)


@pytest.fixture(scope="module")
def lstm():
    cell = cells.make("lstm", H)
    return cell, cell.init(jax.random.key(0), D)


@pytest.fixture(scope="module")
def xs():
    return jax.random.normal(jax.random.key(1), (B, T, D))


def _reference(cell, params, xs_TD, length, reset_T=None, reverse=False):
    """One sequence, stepped in Python: episodes (split at resets) each start from zeros."""
    step = _step(cell)
    zero = cell.initial_carry(params)
    ys = np.zeros((xs_TD.shape[0], cell.output_size), np.float32)
    starts = [t for t in range(length) if t == 0 or (reset_T is not None and reset_T[t])]
    finals = []
    for start, stop in zip(starts, [*starts[1:], length][: len(starts)], strict=True):
        order = range(stop - 1, start - 1, -1) if reverse else range(start, stop)
        carry = zero
        for t in order:
            carry, y = step(params, carry, xs_TD[t])
            ys[t] = y
        finals.append(carry)
    final = zero if not finals else (finals[0] if reverse else finals[-1])
    return ys, final


# ---- scan ------------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_lengths_match_stepping_each_sequence(lstm, xs, reverse):
    cell, params = lstm
    lengths = np.array([T, 0, 4])
    ys, carry = _scan(cell, params, xs, seq_lengths=lengths, reverse=reverse)
    assert ys.shape == (B, T, H)
    for b in range(B):
        ys_ref, carry_ref = _reference(cell, params, xs[b], lengths[b], reverse=reverse)
        _close(ys[b], ys_ref)  # padded steps are zero in both
        _tree_close(jax.tree.map(lambda a, b=b: a[b], carry), carry_ref)
    # time-major is the same computation transposed
    ys_tm, carry_tm = _scan(
        cell, params, xs.swapaxes(0, 1), seq_lengths=lengths, reverse=reverse, time_major=True
    )
    _close(ys_tm.swapaxes(0, 1), ys)
    _tree_close(carry_tm, carry)


def test_scan_without_lengths_reverse_is_flipped_forward(lstm, xs):
    cell, params = lstm
    ys_r, carry_r = _scan(cell, params, xs, reverse=True)
    ys_f, carry_f = _scan(cell, params, xs[:, ::-1])
    _close(ys_r, ys_f[:, ::-1])
    _tree_close(carry_r, carry_f)


def test_scan_unbatched_custom_carry_and_step_equivalence(lstm, xs):
    cell, params = lstm
    carry0 = jax.tree.map(lambda a: a + 0.5, cell.initial_carry(params, (B,)))
    ys, carry = _scan(cell, params, xs, carry0)
    c = jax.tree.map(lambda a: a[0], carry0)
    for t in range(T):
        c, y = cell.step(params, c, xs[0, t])
        _close(ys[0, t], y)
    _tree_close(jax.tree.map(lambda a: a[0], carry), c)
    ys_1, carry_1 = _scan(cell, params, xs[0], jax.tree.map(lambda a: a[0], carry0))
    _close(ys_1, ys[0])


@settings(max_examples=6, deadline=None)
@given(
    resets=st.lists(st.booleans(), min_size=2 * 7, max_size=2 * 7),
    lengths=st.lists(st.integers(0, 7), min_size=2, max_size=2),
    reverse=st.booleans(),
)
@example(resets=[False] * 13 + [True], lengths=[0, 1], reverse=False)  # reset in the padding
def test_resets_packed_batch_equals_separate_episodes(resets, lengths, reverse):
    cell = cells.make("gru", 3)
    params = cell.init(jax.random.key(2), 2)
    xs_BTD = jax.random.normal(jax.random.key(3), (2, 7, 2))
    resets_BT = np.array(resets).reshape(2, 7)
    lengths = np.array(lengths)
    ys, carry = _scan(
        cell, params, xs_BTD, seq_lengths=lengths, resets=resets_BT, reverse=reverse
    )
    for b in range(2):
        ys_ref, carry_ref = _reference(cell, params, xs_BTD[b], lengths[b], resets_BT[b], reverse)
        _close(ys[b], ys_ref)
        _close(carry[b], carry_ref)


@pytest.mark.parametrize("reverse", [False, True])
def test_return_carries_per_step(lstm, xs, reverse):
    cell, params = lstm
    lengths = np.array([T, 2, 5])
    ys, carry, carries = _scan(
        cell, params, xs, seq_lengths=lengths, reverse=reverse, return_carries=True
    )
    h_BTH, c_BTH = carries
    assert h_BTH.shape == c_BTH.shape == (B, T, H)
    mask = (np.arange(T) < lengths[:, None])[..., None]
    _close(np.where(mask, h_BTH, 0), ys)  # h_t is y_t at valid steps
    last = 0 if reverse else lengths - 1  # the carry after the last step processed
    _close(h_BTH[np.arange(B), last], carry[0])
    _close(c_BTH[np.arange(B), last], carry[1])


def test_scan_vmap_over_sequences(lstm, xs):
    cell, params = lstm
    lengths = jnp.array([T, 1, 3])
    ys, carry = _scan(cell, params, xs, seq_lengths=lengths, reverse=True)
    one = lambda x, L: lj.scan(cell, params, x, seq_lengths=L, reverse=True)
    _tree_close(jax.vmap(one)(xs, lengths), (ys, carry))


@pytest.mark.parametrize("reverse", [False, True])
def test_grad_ignores_padding(lstm, xs, reverse):
    cell, params = lstm
    lengths = jnp.array([T, 2, 4])

    def loss(p, x):
        ys, (h, c) = lj.scan(cell, p, x, seq_lengths=lengths, reverse=reverse)
        return jnp.sum(ys**2) + jnp.sum(h * c)

    g_p, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    padded = np.arange(T) >= np.asarray(lengths)[:, None]
    assert np.all(np.asarray(g_x)[padded] == 0)
    assert np.all(np.abs(np.asarray(g_x)[~padded]).sum(-1) > 0)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g_p))


# ---- RNN stack -------------------------------------------------------------------------
def test_rnn_bidirectional_mixed_cells_equals_composed_scans(xs):
    net = lj.RNN([cells.make("lstm", H), cells.make("gru", 2)], bidirectional=True)
    params = net.init(jax.random.key(4), D)
    assert [[p["W_x"].shape[0] for p in layer] for layer in params] == [[D, D], [2 * H, 2 * H]]
    lengths = jnp.array([T, 3, 1])
    ys, carries = _apply(net, params, xs, seq_lengths=lengths)
    assert ys.shape == (B, T, 4) and net.output_size == 4

    h, expected = xs, []
    for cell, layer in zip(net.cells, params, strict=True):
        outs = [_scan(cell, p, h, seq_lengths=lengths, reverse=d == 1) for d, p in enumerate(layer)]
        h = jnp.concatenate([o[0] for o in outs], -1)
        expected.append([o[1] for o in outs])
    _close(ys, h)
    _tree_close(carries, expected)
    # eager agrees with jit, and an explicit carry is accepted
    _tree_close(net.apply(params, xs, net.initial_carry(params, (B,)), seq_lengths=lengths),
                (ys, carries))


def test_rnn_residual_and_proj_size(xs):
    rnn = cells.make("rnn", H)
    net = lj.RNN(rnn, num_layers=2, residual=True)
    params = net.init(jax.random.key(5), D)
    ys, _ = _apply(net, params, xs)
    h0, _ = _scan(rnn, params[0][0], xs)  # D != H: no skip on the first layer
    h1, _ = _scan(rnn, params[1][0], h0)
    _close(ys, h1 + h0)

    proj = lj.RNN(cells.make("lstm", 5), num_layers=2, proj_size=2)
    assert all(c.proj_size == 2 for c in proj.cells)
    pp = proj.init(jax.random.key(6), D)
    assert pp[0][0]["W_proj"].shape == (5, 2) and pp[1][0]["W_x"].shape == (2, 20)
    ys, [[(h, c)], _] = _apply(proj, pp, xs)
    assert ys.shape == (B, T, 2) and h.shape == (B, 2) and c.shape == (B, 5)


def test_dropout_between_layers_only_and_deterministic(xs):
    cell = cells.make("lstm", H)
    params = lj.RNN(cell, num_layers=2).init(jax.random.key(7), D)
    plain = lj.RNN(cell, num_layers=2)
    drop = lj.RNN(cell, num_layers=2, dropout=0.5, recurrent_dropout=0.3)
    key = jax.random.key(8)
    ys, carries = _apply(plain, params, xs)
    _tree_close(_apply(drop, params, xs), (ys, carries))  # no key: evaluation
    _tree_close(_apply(drop, params, xs, key=key, deterministic=True), (ys, carries))
    ys_a, _ = _apply(drop, params, xs, key=key)
    ys_b, _ = _apply(drop, params, xs, key=jax.random.key(9))
    assert np.abs(ys_a - ys).max() > 1e-3 and np.abs(ys_a - ys_b).max() > 1e-3
    # as in torch, dropout acts between layers: a single layer is unaffected
    one = lj.RNN(cell, dropout=0.5)
    p1 = one.init(key, D)
    _close(_apply(one, p1, xs, key=key)[0], _apply(one, p1, xs)[0])


def test_recurrent_dropout_is_variational():
    """h_t = x_t + m * h_{t-1} with x = 1: m = (h_t - 1) / h_{t-1} must be fixed over t."""
    Hv, Tv, Bv, rate = 8, 5, 4, 0.5
    cell = cells.make("rnn", Hv, activation="identity", use_bias=False)
    net = lj.RNN(cell, recurrent_dropout=rate)
    params = [[{"W_x": jnp.eye(Hv), "W_h": jnp.eye(Hv)}]]
    key = jax.random.key(10)
    ys, _ = _apply(net, params, jnp.ones((Bv, Tv, Hv)), key=key)
    ys = np.asarray(ys)
    m = (ys[:, 1:] - 1) / ys[:, :-1]  # [B, T-1, H]
    np.testing.assert_allclose(m, np.broadcast_to(m[:, :1], m.shape), atol=1e-5)
    assert set(np.round(m.ravel(), 5)) == {0.0, 1 / (1 - rate)}
    masks = [tuple(row) for row in m[:, 0]]
    assert len(set(masks)) == Bv  # a different mask for every sequence
    # seq_lengths and a multi-dimensional batch go through the vmapped path too
    lengths = jnp.array([[5, 2], [0, 3]])
    ys2, _ = _apply(net, params, jnp.ones((2, 2, Tv, Hv)), seq_lengths=lengths, key=key)
    assert ys2.shape == (2, 2, Tv, Hv) and np.all(np.asarray(ys2)[0, 1, 2:] == 0)


def test_recurrent_dropout_masks_the_cells_recurrent_weight_indrnn_u():
    """recurrent_dropout reaches the weight the cell names (Cell.recurrent_weight), here
    IndRNN's elementwise u: h_t = x_t + (m * u) * h_{t-1} with x = 1, one mask per sequence."""
    Hv, Tv, Bv, rate = 8, 5, 4, 0.5
    cell = cells.make("indrnn", Hv, activation="identity", use_bias=False)
    net = lj.RNN(cell, recurrent_dropout=rate)
    params = [[{"W_x": jnp.eye(Hv), "u": jnp.full((Hv,), 0.5)}]]
    ys, _ = _apply(net, params, jnp.ones((Bv, Tv, Hv)), key=jax.random.key(10))
    ys = np.asarray(ys)
    mu = (ys[:, 1:] - 1) / ys[:, :-1]  # m * u, [B, T-1, H]
    np.testing.assert_allclose(mu, np.broadcast_to(mu[:, :1], mu.shape), atol=1e-5)
    assert set(np.round(mu.ravel(), 5)) == {0.0, 0.5 / (1 - rate)}


def test_jit_vmap_grad_through_rnn(xs, x64):
    net = lj.RNN(cells.make("gru", H), bidirectional=True, recurrent_dropout=0.2)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(11), D))
    xs = xs.astype(jnp.float64)
    lengths = jnp.array([T, 4, 2])
    key = jax.random.key(12)

    @jax.jit
    def loss(p):
        ys, carries = net.apply(p, xs, seq_lengths=lengths, key=key)
        return jnp.sum(ys**2) + sum(jnp.sum(c**2) for layer in carries for c in layer)

    g = jax.jit(jax.grad(loss))(params)
    assert all(float(jnp.abs(leaf).sum()) > 0 for leaf in jax.tree.leaves(g))
    # the gradient matches a central difference along itself
    eps = 1e-6
    shifted = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, params, g)
    slope = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
    np.testing.assert_allclose(slope, sum(jnp.sum(d**2) for d in jax.tree.leaves(g)), rtol=1e-6)
    ys, carries = _apply(net, params, xs, seq_lengths=lengths)
    per_seq = jax.jit(jax.vmap(lambda x, L: net.apply(params, x, seq_lengths=L)))
    _tree_close(per_seq(xs, lengths), (ys, carries), atol=1e-12)


# ---- bad input -------------------------------------------------------------------------
def test_bad_inputs_name_the_value(lstm, xs):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"seq_lengths has shape \[3, 1\]; expected .*\[3\]"):
        lj.scan(cell, params, xs, seq_lengths=jnp.ones((B, 1), int))
    with pytest.raises(ValueError, match=r"\[0, T=6\]; got \[7, -1\]"):
        lj.scan(cell, params, xs, seq_lengths=np.array([7, 2, -1]))
    with pytest.raises(ValueError, match="seq_lengths must be integers"):
        lj.scan(cell, params, xs, seq_lengths=jnp.ones(B))
    form = r"carry has the form \[3, 4\]; expected \(\[3, 4\], \[3, 4\]\)"
    with pytest.raises(ValueError, match=form):
        lj.scan(cell, params, xs, jnp.zeros((B, H)))
    with pytest.raises(ValueError, match=r"expected \(\[3, 4\], \[3, 4\]\)"):
        lj.scan(cell, params, xs, (jnp.zeros((2, H)), jnp.zeros((B, H))))
    with pytest.raises(ValueError, match=r"resets has shape \[6, 3\]; expected \[3, 6\]"):
        lj.scan(cell, params, xs, resets=jnp.zeros((T, B), bool))
    with pytest.raises(ValueError, match=r"xs must be \[\*batch, T, D\]; got shape \[3\]"):
        lj.scan(cell, params, jnp.ones(3))
    net = lj.RNN(cell, num_layers=2)
    net_params = net.init(jax.random.key(0), D)
    with pytest.raises(ValueError, match="RNN carry has the form"):
        net.apply(net_params, xs, [[cell.initial_carry(params, (B,))]])
    with pytest.raises(ValueError, match="RNN params must be a list of 2 layers"):
        net.apply(net_params[:1], xs)


def test_bad_rnn_options():
    gru = cells.make("gru", H)
    with pytest.raises(ValueError, match="proj_size=2 needs LSTM cells.*layer 0 is GRU"):
        lj.RNN(gru, proj_size=2)
    with pytest.raises(ValueError, match="proj_size=-1"):
        lj.RNN(cells.make("lstm", H), proj_size=-1)
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ValueError, match=rf"dropout={bad!r} must be a probability in \[0, 1\)"):
            lj.RNN(gru, num_layers=2, dropout=bad)
    with pytest.raises(ValueError, match=r"recurrent_dropout=1.5"):
        lj.RNN(gru, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="num_layers=3 but 2 cells"):
        lj.RNN([gru, gru], num_layers=3)
    with pytest.raises(TypeError, match="expects a cell or a non-empty sequence of cells"):
        lj.RNN("lstm")
    net = lj.RNN(gru, num_layers=2, dropout=0.1)
    with pytest.raises(ValueError, match="need a PRNG key"):
        net.apply(net.init(jax.random.key(0), 2), jnp.ones((1, 2, 2)), deterministic=False)
