"""Hardening of the core library (red-team issue 23).

1. ``seq_lengths`` outside ``[0, T]``: concrete lengths are a one-line error naming the
   values, T and the fix; traced ones (under ``jit``) are clamped to ``[0, T]`` on every path,
   so a bidirectional RNN no longer returns NaN outputs, carries and gradients.
2. ``cell.step``/``cell.recur`` with another cell's params: the one-line params error
   ``lj.scan`` gives, at trace time only (the compiled program is unchanged).
3. ``lj.diagnostics`` on a batch of 0 sequences: a one-line error, not a NumPy reduction error.
4. ``lj.interop.from_torch`` of a module on the meta device: a one-line error saying how to
   materialise it, not torch's ``NotImplementedError``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _xla import jit as fast_compile_jit

import lstmjax as lj
from lstmjax import cells

B, T, D, H = 3, 5, 2, 3
LENGTHS = np.array([7, -2, 3])  # above T, below 0, in range
CLAMPED = np.array([T, 0, 3])


# ---- case 1: seq_lengths outside [0, T] ------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_lstm(p, xs_TD, length, reverse):
    """One sequence through lstmjax's LSTM equations in NumPy: ``(ys [T, H], (h, c))``."""
    W_x, W_h, b = (np.asarray(p[k], np.float64) for k in ("W_x", "W_h", "b"))
    h = c = np.zeros(H)
    ys = np.zeros((xs_TD.shape[0], H))
    order = range(length - 1, -1, -1) if reverse else range(length)
    for t in order:
        z = xs_TD[t] @ W_x + b + h @ W_h
        i, f, g, o = (z[k * H:(k + 1) * H] for k in range(4))  # PyTorch's gate order
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        ys[t] = h
    return ys, (h, c)


@pytest.fixture
def bilstm(x64):
    net = lj.RNN(cells.make("lstm", H, dtype="float64"), bidirectional=True)
    params = net.init(jax.random.key(0), D)
    xs = np.asarray(jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64))
    return net, params, xs


@pytest.mark.parametrize("lengths, bad", [([7, 3, 5], "[7]"), ([-1, 3, 6], "[-1, 6]")])
def test_concrete_seq_lengths_out_of_range_is_a_one_line_error(lengths, bad):
    cell = cells.make("lstm", H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((B, T, D))
    net = lj.RNN(cell, bidirectional=True)
    pattern = (rf"seq_lengths must lie in \[0, T={T}\]; got {re.escape(bad)} out of range "
               rf"\(T is the time steps of xs\): pad xs to the longest sequence, or clip the "
               rf"lengths \(np\.clip\(seq_lengths, 0, {T}\)\)")
    with pytest.raises(ValueError, match=r"lj\.scan: " + pattern) as info:
        lj.scan(cell, params, xs, seq_lengths=np.array(lengths))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"lj\.RNN\.apply: " + pattern):
        net.apply(net.init(jax.random.key(0), D), xs, seq_lengths=jnp.array(lengths))


def test_bidirectional_rnn_under_jit_clamps_seq_lengths_and_stays_finite(bilstm):
    """The reported case: traced lengths above T made the backward direction gather out of
    range (NaN outputs and carry); now both directions run the clamped lengths."""
    net, params, xs = bilstm
    ys, carries = jax.jit(lambda p, x, n: net.apply(p, x, seq_lengths=n))(
        params, xs, jnp.asarray(LENGTHS))
    ys = np.asarray(ys)
    assert np.isfinite(ys).all()
    for b in range(B):  # oracle: NumPy LSTMs over the clamped lengths, both directions
        fwd, (h_f, c_f) = _numpy_lstm(params[0][0], xs[b], CLAMPED[b], reverse=False)
        bwd, (h_b, c_b) = _numpy_lstm(params[0][1], xs[b], CLAMPED[b], reverse=True)
        np.testing.assert_allclose(ys[b], np.concatenate([fwd, bwd], -1), atol=1e-12)
        for got, want in zip((*carries[0][0], *carries[0][1]), (h_f, c_f, h_b, c_b),
                             strict=True):
            np.testing.assert_allclose(np.asarray(got)[b], want, atol=1e-12)


@pytest.mark.parametrize("fast", [True, False])
def test_traced_seq_lengths_gradients_equal_the_clamped_lengths(bilstm, fast):
    """Gradients through both directions (the fast custom-VJP loop and the reference loop)
    with traced out-of-range lengths are finite and equal those of the clamped lengths."""
    net, params, xs = bilstm
    net = lj.RNN(net.cells[0], bidirectional=True, fast=fast)

    def loss(p, x, n):
        ys, carries = net.apply(p, x, seq_lengths=n)
        return jnp.sum(ys**2) + sum(jnp.sum(a) for a in jax.tree.leaves(carries))

    grads = fast_compile_jit(jax.grad(loss, argnums=(0, 1)))(params, xs, jnp.asarray(LENGTHS))
    want = jax.grad(loss, argnums=(0, 1))(params, xs, CLAMPED)
    for got, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True):
        assert np.isfinite(np.asarray(got)).all()
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-10)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_under_jit_clamps_seq_lengths_like_rnn(bilstm, reverse):
    net, params, xs = bilstm
    cell, p = net.cells[0], params[0][1 if reverse else 0]
    ys, (h, c) = jax.jit(lambda x, n: lj.scan(cell, p, x, seq_lengths=n, reverse=reverse))(
        xs, jnp.asarray(LENGTHS))
    for b in range(B):
        ys_ref, (h_ref, c_ref) = _numpy_lstm(p, xs[b], CLAMPED[b], reverse=reverse)
        np.testing.assert_allclose(np.asarray(ys)[b], ys_ref, atol=1e-12)
        np.testing.assert_allclose(np.asarray(h)[b], h_ref, atol=1e-12)
        np.testing.assert_allclose(np.asarray(c)[b], c_ref, atol=1e-12)


def test_gradient_flow_under_jit_clamps_seq_lengths(bilstm):
    """The lag index ``L - 1 - k`` also reads a traced length above T as T."""
    net, params, xs = bilstm
    cell, p = net.cells[0], params[0][0]
    flow = lambda n: lj.diagnostics.gradient_flow(cell, p, xs, seq_lengths=n).log10_gain
    got = jax.jit(flow)(jnp.asarray(LENGTHS))
    np.testing.assert_allclose(np.asarray(got), np.asarray(flow(CLAMPED)), atol=1e-10)


# ---- case 2: step/recur with params of another cell ------------------------------------------
@pytest.mark.parametrize("name, given, pattern", [
    ("gru", ("lstm", H), r"GRUCell\.step: params for GRUCell\(hidden_size=3\): missing key "
                         r"'b_hn' \(expected shape \(3,\)\); key 'W_h' has shape \(3, 12\); "
                         r"expected \(3, 9\)"),
    ("lstm", ("gru", H), r"LSTMCell\.step: params for LSTMCell\(hidden_size=3\): key 'W_h' "
                         r"has shape \(3, 9\); expected \(3, 12\).*unexpected key 'b_hn'"),
    ("lstm", ("lstm", 2 * H), r"LSTMCell\.step: params for LSTMCell\(hidden_size=3\): key "
                              r"'W_h' has shape \(6, 24\); expected \(3, 12\)"),
])
def test_step_with_params_of_another_cell_is_a_one_line_error(name, given, pattern):
    cell = cells.make(name, H)
    params = cells.make(*given).init(jax.random.key(0), D)
    carry = cell.initial_carry(params, (B,))
    x = jnp.ones((B, D))
    with pytest.raises(ValueError, match=pattern) as info:
        cell.step(params, carry, x)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=pattern):  # the same at trace time under jit
        jax.jit(cell.step)(params, carry, x)


def test_recur_with_params_of_another_cell_is_a_one_line_error():
    gru, lstm = cells.make("gru", H), cells.make("lstm", H)
    params = lstm.init(jax.random.key(0), D)
    h, xp = gru.initial_carry(params, (B,)), lstm.project(params, jnp.ones((B, D)))
    with pytest.raises(ValueError, match=r"GRUCell\.recur: params for GRUCell\(hidden_size=3\): "
                                         r"missing key 'b_hn'"):
        gru.recur(params, h, xp)
    own = gru.init(jax.random.key(0), D)
    with pytest.raises(ValueError, match=r"GRUCell\.recur: xp has shape \(3, 12\); expected "
                                         r"\[\.\.\., 9\]"):
        gru.recur(own, h, xp)


def test_step_check_adds_nothing_to_the_compiled_program(monkeypatch):
    """The check reads shapes at trace time: ``step``'s jaxpr is the same without it."""
    cell = cells.make("lstm", H)
    params = cell.init(jax.random.key(0), D)
    carry, x = cell.initial_carry(params, (B,)), jnp.ones((B, D))
    trace = lambda: str(jax.make_jaxpr(cell.step)(params, carry, x))
    checked = trace()
    monkeypatch.setattr(cells._base, "check_params", lambda *args, **kwargs: None)
    monkeypatch.setattr(cells.Cell, "_check_recur", lambda *args, **kwargs: None)
    assert trace() == checked


# ---- case 3: diagnostics on an empty batch --------------------------------------------------
@pytest.mark.parametrize("who", ["gradient_flow", "gate_stats", "loss_gradient_by_position"])
def test_diagnostics_on_a_batch_of_zero_sequences_is_a_one_line_error(who):
    cell = cells.make("lstm", H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((0, T, D))
    fn = getattr(lj.diagnostics, who)
    args = (lambda ys: jnp.sum(ys),) if who == "loss_gradient_by_position" else ()
    with pytest.raises(ValueError, match=rf"{who}: xs holds no sequences \(batch shape \[0\], "
                                         rf"xs shape \[0, {T}, {D}\]\); pass at least one"):
        fn(cell, params, xs, *args)


# ---- case 4: from_torch of a module on the meta device --------------------------------------
@pytest.mark.parametrize("make", [
    lambda torch: torch.nn.LSTM(D, H, device="meta"),
    lambda torch: torch.nn.GRUCell(D, H, device="meta"),
])
def test_from_torch_of_a_meta_module_says_to_materialise_it(make):
    torch = pytest.importorskip("torch")
    module = make(torch)
    with pytest.raises(ValueError, match=r"from_torch: the \w+'s weights are on the meta device "
                                         r"\(shapes only, no values\); materialise them first, "
                                         r"e\.g\. module\.to_empty\(device='cpu'\)"):
        lj.interop.from_torch(module)
    # the advice works: materialised and initialised, the module imports
    module.to_empty(device="cpu").reset_parameters()
    lj.interop.from_torch(module)
