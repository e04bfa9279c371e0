"""lstmjax.diagnostics against independent oracles: closed forms (a linear Elman cell, saturated
gates), dense per-step Jacobians chained in float64, autodiff of the loss, and a NumPy LSTM.

The shapes (B=3, T=6, D=2, H=3, lengths 6/4/5) are shared by most tests so that each cell's
programs compile once for the whole file.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tolerance import assert_same_math
from jax.flatten_util import ravel_pytree

import lstmjax as lj
from lstmjax import diagnostics as dg

B, T, D, H = 3, 6, 2, 3
LENGTHS = np.array([6, 4, 5])
UNGATED = {"rnn", "irnn", "indrnn"}


def _params(cell, seed=0):
    """Params in the shapes ``cell.init`` gives, drawn by NumPy (N(0, 0.5²)): no initialiser
    program to compile per cell."""
    shapes = jax.eval_shape(lambda k: cell.init(k, D), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: 0.5 * rng.standard_normal(a.shape, np.float32), shapes)


def _inputs(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape, np.float32)


def _setup(name, **options):
    cell = lj.cells.make(name, H, **options)
    return cell, _params(cell), _inputs(B, T, D)


def _with_bias(cell, params, **blocks):
    """``params`` with the gate blocks named in ``blocks`` (e.g. f=30.0) set to a constant."""
    b = np.array(params["b"])
    for gate, value in blocks.items():
        if isinstance(cell, lj.cells.LSTMCell):
            k = cell.gates.index(gate)
        else:  # GRU (r, z, n), MGU (f, n)
            k = {"r": 0, "z": 1, "f": 0}[gate]
        b[k * H : (k + 1) * H] = value
    return {**params, "b": b}


# ---- gradient flow ---------------------------------------------------------------------------
@pytest.mark.parametrize("a", [0.9, 0.01])
def test_linear_elman_gain_is_a_power_of_a_without_underflow(a):
    """h' = x W_x + a h: ∂h_T/∂h_{T-k} = a^k I, so log10_gain[k] = k log10 a (to -598 at a=0.01)."""
    cell = lj.cells.make("rnn", 4, activation="identity")
    params = {**_params(cell), "W_h": jnp.float32(a) * jnp.eye(4)}
    xs = _inputs(2, 300, D)
    g = dg.gradient_flow(cell, params, xs, key=jax.random.PRNGKey(3))
    expected = np.arange(300) * np.log10(np.float32(a))
    np.testing.assert_array_equal(np.asarray(g.lag), np.arange(300))
    np.testing.assert_allclose(np.asarray(g.log10_gain), expected, rtol=0, atol=1e-4)
    if a == 0.01:
        assert float(g.log10_gain[-1]) < -597


def test_lstm_with_open_forget_and_shut_input_gate_keeps_gain_through_c():
    """f = σ(30) = 1, i = σ(-30) ≈ 0: c' = c, so the carry's gain stays O(1) at every lag;
    with f ≈ i ≈ σ(-30) ≈ 1e-13 every path is cut by ~13 decades a step, still reported."""
    cell = lj.cells.make("lstm", H)
    params = _params(cell)
    xs = _inputs(B, 60, D)
    keep = dg.gradient_flow(cell, _with_bias(cell, params, f=30.0, i=-30.0), xs)
    gain = np.asarray(keep.log10_gain)
    assert np.all(np.abs(gain) < 0.35), gain
    assert abs(gain[-1] - gain[10]) < 0.05, gain
    cut = _with_bias(cell, params, f=-30.0, i=-30.0)
    forget = np.asarray(dg.gradient_flow(cell, cut, xs).log10_gain)
    assert np.all(np.isfinite(forget)) and forget[-1] < -300, forget


def _step_jacobians(cell, params, xs, lengths):
    """Dense ``A[b, t] = ∂s_t/∂s_{t-1}`` (float64) and the probes' flattening of the carry."""
    carry0 = cell.initial_carry(params, ())
    flat0, unravel = ravel_pytree(carry0)

    def step(s_flat, x):
        return ravel_pytree(cell.step(params, unravel(s_flat), x)[0])[0]

    def run(x_T):
        def body(s, x):
            return step(s, x), (s, jax.jacfwd(step)(s, x))
        return jax.lax.scan(body, flat0, x_T)[1][1]  # A_t at s_{t-1}

    return np.asarray(jax.jit(jax.vmap(run))(xs), np.float64)


def _oracle_gain(A, lengths, probes):
    """log10 RMS_{v, b: k < L_b} ‖(A_{L-1} ⋯ A_{L-k})ᵀ v‖ / ‖v‖ from dense products."""
    out = []
    for k in range(A.shape[1]):
        sq = []
        for b, L in enumerate(lengths):
            if k >= L:
                continue
            J = np.eye(A.shape[-1])
            for t in range(L - k, L):
                J = A[b, t] @ J
            v = probes[:, b].astype(np.float64)
            sq += list(np.sum((v @ J) ** 2, -1) / np.sum(v**2, -1))
        out.append(0.5 * np.log10(np.mean(sq)) if sq else np.nan)
    return np.array(out)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gradient_flow_matches_chained_dense_jacobians(name):
    cell, params, xs = _setup(name)
    A = _step_jacobians(cell, params, xs, LENGTHS)
    X = A.shape[-1]
    # the basis e_i as probes: exactly ‖J‖_F / √X
    basis = np.broadcast_to(np.eye(X, dtype=np.float32)[:, None], (X, B, X))
    g = dg.gradient_flow(cell, params, xs, seq_lengths=LENGTHS, probes=basis)
    np.testing.assert_allclose(np.asarray(g.log10_gain), _oracle_gain(A, LENGTHS, basis),
                               rtol=0, atol=1e-4)
    # the default probes (documented: default_rng(0))
    g = dg.gradient_flow(cell, params, xs, seq_lengths=LENGTHS, num_probes=X)
    probes = np.random.default_rng(0).standard_normal((X, B, X), np.float32)
    np.testing.assert_allclose(np.asarray(g.log10_gain), _oracle_gain(A, LENGTHS, probes),
                               rtol=0, atol=1e-4)


def test_gradient_flow_lags_are_counted_from_each_sequence_end():
    cell, params, xs = _setup("lstm")
    short = np.array([4, 4, 4])
    g = dg.gradient_flow(cell, params, xs, seq_lengths=short, num_probes=2 * H)
    cut = np.concatenate([np.asarray(xs[:, :4]), np.asarray(xs[:, :2])], axis=1)  # T kept
    g_cut = dg.gradient_flow(cell, params, cut, seq_lengths=short, num_probes=2 * H)
    np.testing.assert_allclose(np.asarray(g.log10_gain)[:4], np.asarray(g_cut.log10_gain)[:4],
                               atol=1e-6)
    assert np.all(np.isnan(np.asarray(g.log10_gain)[4:]))  # no sequence is that long
    assert g.to_dict()["log10_gain"][4:] == [None, None]


# ---- loss gradient by position ---------------------------------------------------------------
def test_loss_gradient_matches_autodiff():
    cell, params, xs = _setup("lstm")
    W = _inputs(H, 2, seed=5)

    def loss_fn(ys):
        return jnp.mean((ys @ W - 1.0) ** 2)

    got = dg.loss_gradient_by_position(cell, params, xs, loss_fn, seq_lengths=LENGTHS)
    grad = jax.grad(lambda x: loss_fn(lj.scan(cell, params, x, seq_lengths=LENGTHS)[0]))(xs)
    norms = np.linalg.norm(np.asarray(grad, np.float64), axis=-1)  # [B, T]
    valid = np.arange(T)[None] < LENGTHS[:, None]
    expected = np.log10(np.sum(norms * valid, 0) / np.sum(valid, 0))
    np.testing.assert_array_equal(np.asarray(got.position), np.arange(T))
    np.testing.assert_allclose(np.asarray(got.log10_grad_norm), expected, rtol=0, atol=1e-4)


def test_loss_gradient_does_not_underflow():
    """L = Σ h_{T-1}: ∂L/∂x_t = a^{T-1-t} W_x 1, far below float32's range for small t."""
    cell = lj.cells.make("rnn", 4, activation="identity")
    params = {**_params(cell), "W_h": jnp.float32(0.01) * jnp.eye(4)}
    xs = _inputs(2, 300, D)
    got = dg.loss_gradient_by_position(cell, params, xs, lambda ys: ys[:, -1].sum())
    row = np.linalg.norm(np.asarray(params["W_x"], np.float64).sum(1))
    expected = (299 - np.arange(300)) * np.log10(np.float32(0.01)) + np.log10(row)
    np.testing.assert_allclose(np.asarray(got.log10_grad_norm), expected, rtol=0, atol=1e-4)


def test_loss_fn_must_return_a_scalar():
    cell, params, xs = _setup("lstm")
    with pytest.raises(ValueError, match="must return a scalar"):
        dg.loss_gradient_by_position(cell, params, xs, lambda ys: ys.sum(-1))


# ---- gate statistics -----------------------------------------------------------------------
def _numpy_lstm(params, xs, lengths):
    """Gates i, f, o and cell states c of a plain LSTM, in float64, valid steps only."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    sig = lambda z: 1 / (1 + np.exp(-z))
    gates, cs = {"i": [], "f": [], "o": []}, np.zeros((len(lengths), xs.shape[1]))
    for b, L in enumerate(lengths):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(L):
            z = np.asarray(xs[b, t], np.float64) @ p["W_x"] + p["b"] + h @ p["W_h"]
            i, f, g, o = sig(z[:H]), sig(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sig(z[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            for name, v in (("i", i), ("f", f), ("o", o)):
                gates[name].append(v)
            cs[b, t] = np.linalg.norm(c)
    return {k: np.concatenate(v) for k, v in gates.items()}, cs


def test_gate_stats_match_a_numpy_lstm():
    cell, params, xs = _setup("lstm")
    s = dg.gate_stats(cell, params, xs, seq_lengths=LENGTHS, low=0.3, high=0.6)
    gates, cs = _numpy_lstm(params, xs, LENGTHS)
    assert sorted(s.gates) == ["f", "i", "o"] and s.keep_gate == "f"
    for name, g in gates.items():
        got = s.gates[name]
        np.testing.assert_allclose(float(got.mean), g.mean(), rtol=1e-5)
        np.testing.assert_allclose(float(got.frac_low), np.mean(g < 0.3), atol=1e-6)
        np.testing.assert_allclose(float(got.frac_high), np.mean(g > 0.6), atol=1e-6)
    f = gates["f"]
    assert f.size == 45  # nearest-rank quartiles fall on ranks 11, 22, 33 exactly
    tau = np.sort(-1 / np.log(f))[[4, 11, 22, 33, 40]]  # deciles: round(0.1·44), round(0.9·44)
    got = s.timescale
    np.testing.assert_allclose([got.q10, got.q25, got.median, got.q75, got.q90], tau, rtol=1e-4)
    valid = np.arange(T)[None] < LENGTHS[:, None]
    np.testing.assert_allclose(np.asarray(s.cell_norm), (cs * valid).sum(0) / valid.sum(0),
                               rtol=1e-5)
    assert json.loads(json.dumps(s.to_dict(), allow_nan=False))["keep_gate"] == "f"


@pytest.mark.parametrize("name,gate", [("lstm", "f"), ("gru", "z"), ("mgu", "f")])
def test_saturated_keep_gates(name, gate):
    """A bias of ±30 pins the gate at 1/0; τ = -1/ln keep is then huge or tiny. The GRU keeps
    h with z (h' = (1-z) n + z h); the paper MGU with 1-f (h' = (1-f) h + f n)."""
    cell, params, xs = _setup(name)
    sign = -1.0 if cell.keep_gate.startswith("1-") else 1.0
    with_bias = lambda v: _with_bias(cell, params, **{gate: v})
    keep = dg.gate_stats(cell, with_bias(30.0 * sign), xs, seq_lengths=LENGTHS)
    g = keep.gates[gate]
    if sign > 0:
        assert float(g.mean) > 0.999 and float(g.frac_high) == 1.0
    else:
        assert float(g.mean) < 1e-3 and float(g.frac_low) == 1.0
    assert float(keep.timescale.q25) > 1e6  # inf when the gate rounds to exactly 1
    lose = dg.gate_stats(cell, with_bias(-30.0 * sign), xs, seq_lengths=LENGTHS)
    assert float(lose.timescale.q75) < 0.05
    if name == "gru":  # z = 1 keeps h: the gain stays 1 at every lag
        flow = dg.gradient_flow(cell, with_bias(30.0), xs, seq_lengths=LENGTHS, num_probes=H)
        np.testing.assert_allclose(np.asarray(flow.log10_gain), 0.0, atol=1e-3)


def test_gate_stats_refuses_inherited_gates_after_recur_is_overridden():
    @dataclasses.dataclass(frozen=True)
    class Doubled(lj.cells.LSTMCell):
        def recur(self, params, carry, xp):
            return super().recur(params, carry, 2 * xp)

    cell = Doubled(H)
    params = _params(cell)
    with pytest.raises(TypeError, match="override gate_activations"):
        dg.gate_stats(cell, params, jnp.zeros((B, T, D)))


# ---- every cell, shapes, errors, layering ---------------------------------------------------
def test_every_registered_cell_runs_both_under_jit():
    """Both functions for every cell, all in one jitted program (one compile, not one per
    cell); ungated cells give an empty result, gated ones must name their gates."""
    cells = {name: lj.cells.make(name, H) for name in lj.cells.names()}
    params = {name: _params(cell) for name, cell in cells.items()}

    def run(ps, x):
        return {n: (dg.gradient_flow(c, ps[n], x, num_probes=2), dg.gate_stats(c, ps[n], x))
                for n, c in cells.items()}

    for name, (g, s) in jax.jit(run)(params, _inputs(B, T, D)).items():
        cell = cells[name]
        gain = np.asarray(g.log10_gain)
        assert gain.shape == (T,) and gain[0] == 0.0 and not np.any(np.isnan(gain)), name
        json.dumps([g.to_dict(), s.to_dict()], allow_nan=False)
        if name in UNGATED:
            assert s.gates == {} and s.timescale is None and s.keep_gate is None, name
            continue
        assert s.gates, f"{name} is gated but reports no gates: give its class gate_activations"
        assert s.keep_gate == cell.keep_gate, name
        for summary in s.gates.values():
            assert 0 <= float(summary.mean) <= 1, name
            assert 0 <= float(summary.frac_low) + float(summary.frac_high) <= 1, name
        if s.keep_gate is not None:
            ts = s.timescale
            quantiles = [float(ts.q10), float(ts.q25), float(ts.median), float(ts.q75),
                         float(ts.q90)]
            assert 0 <= quantiles[0] and quantiles == sorted(quantiles), name
        has_c = isinstance(cell, (lj.cells.LSTMCell, lj.cells.LNLSTMCell))
        assert (s.cell_norm is not None) == has_c, name


def test_batch_shapes():
    cell, params, xs = _setup("lstm")
    probes = _inputs(2 * H, B, 2 * H, seed=2)
    flat = dg.gradient_flow(cell, params, xs, seq_lengths=LENGTHS, probes=probes)
    nested = dg.gradient_flow(cell, params, xs[:, None], seq_lengths=LENGTHS[:, None],
                              probes=probes[:, :, None])
    assert_same_math(flat.log10_gain, nested.log10_gain)  # another batch shape, another program
    one = dg.gate_stats(cell, params, xs[0])
    assert one.gates["f"].mean.shape == () and one.cell_norm.shape == (T,)


def test_bad_arguments_are_named():
    cell, params, xs = _setup("lstm")
    with pytest.raises(ValueError, match="probes has shape"):
        dg.gradient_flow(cell, params, xs, probes=jnp.ones((2, B, H)))
    with pytest.raises(ValueError, match="num_probes"):
        dg.gradient_flow(cell, params, xs, num_probes=0)
    with pytest.raises(ValueError, match="seq_lengths"):
        dg.gate_stats(cell, params, xs, seq_lengths=[7, 1, 1])
    with pytest.raises(ValueError, match="low < high"):
        dg.gate_stats(cell, params, xs, low=0.9, high=0.1)
    with pytest.raises(TypeError, match="expected a cell"):
        dg.gate_stats("lstm", params, xs)


def test_diagnostics_knows_cells_and_rnn_only():
    root = Path(lj.__file__).parent
    tree = ast.parse((root / "diagnostics.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m.startswith("lstmjax")}
    allowed = ("lstmjax.cells", "lstmjax.rnn", "lstmjax._io", "lstmjax._util")
    assert all(m.startswith(allowed) for m in ours), ours
    for lower in [*(root / "cells").glob("*.py"), root / "rnn.py"]:
        for node in ast.walk(ast.parse(lower.read_text(encoding="utf-8"))):
            names = [a.name for a in getattr(node, "names", [])] + [getattr(node, "module", "")]
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                assert not any("diagnostics" in (n or "") for n in names), lower
    assert lj.diagnostics is dg
