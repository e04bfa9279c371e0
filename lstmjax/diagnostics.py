"""How a cell bridges long gaps: gradient flow against lag, loss gradient by position, gates.

Knows :mod:`lstmjax.cells` and :mod:`lstmjax.rnn` only: a task's loss, or a model's readout,
comes in as a function of the cell's outputs::

    g = lj.diagnostics.gradient_flow(cell, params, xs_BTD, key=key)   # g.lag, g.log10_gain
    p = lj.diagnostics.loss_gradient_by_position(cell, params, xs_BTD, loss_fn)
    s = lj.diagnostics.gate_stats(cell, params, xs_BTD)               # s.gates["f"].mean, ...
    line = json.dumps(s.to_dict())

Conventions shared by the three functions:

* ``xs`` is batch-first ``[*B, T, D]`` as in :func:`lstmjax.scan` (``*B`` may be empty), from
  the zero initial carry; ``seq_lengths [*B]`` are right-padded lengths ``L_b``.
* ``s_t`` is the *whole* carry after step ``t`` (``t = 0 … T-1``), its leaves concatenated on
  the last axis into one vector of width ``X`` in ``jax.tree.leaves`` order: ``[h, c]`` for an
  LSTM (so the path through ``c`` counts), ``[h, c, a]`` with FGR, ``[Re h, Im h]`` for the
  LRU, ``h`` otherwise. ``s_t = step(s_{t-1}, x_t)``; ``h_T`` of the gap literature is the
  last valid carry ``s_{L_b - 1}``.
* No underflow: a product of Jacobians is carried as ``2^E · u`` (integer ``E``, ``max|u|``
  in ``[0.5, 1)``), rescaled exactly by a power of two after every step, so a gain of
  ``1e-200`` is reported as ``-200`` (one step may shrink a vector by at most ~``1e-38``).
* Results are pytrees of arrays (return them from ``jax.jit``); ``to_dict()`` (outside
  ``jit``) gives strict JSON: arrays become lists, non-finite floats ``None``.
* The functions jit themselves with ``cell`` static; arrays compute in float32 or wider.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._io import json_safe
from lstmjax.cells import Cell, LNLSTMCell, LSTMCell
from lstmjax.cells._base import tree_where
from lstmjax.rnn import _check_cell, _check_seq_lengths, scan

__all__ = [
    "gradient_flow", "loss_gradient_by_position", "gate_stats", "GradientFlow",
    "LossGradient", "GateStats", "GateSummary", "TimeScale",
]  # fmt: skip

_NO_EXP = -(2**20)  # the exponent E of a zero vector (below any real one)
_LOG10_2 = math.log10(2.0)
_CELL_STATE = (LSTMCell, LNLSTMCell)  # carries (h, c, ...): cell_norm reads c


def _pytree(data: list[str], meta: tuple[str, ...] = ()):
    """Register a frozen dataclass as a pytree with ``data`` leaves and static ``meta``."""
    return functools.partial(
        jax.tree_util.register_dataclass, data_fields=data, meta_fields=list(meta)
    )


def _plain(v):
    """``v`` with arrays as (nested) lists and records as dicts."""
    if isinstance(v, _Record):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, float)):
        return v
    return np.asarray(v).tolist()


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """The fields as strict JSON (lists, floats; non-finite floats as None). Outside jit."""
        return json_safe(_plain(self))


# ---- records ---------------------------------------------------------------------------
@_pytree(["lag", "log10_gain"])
@dataclasses.dataclass(frozen=True)
class GradientFlow(_Record):
    """``lag [T]`` (``k = 0 … T-1``) and ``log10_gain [T]`` (see :func:`gradient_flow`)."""

    lag: Any
    log10_gain: Any


@_pytree(["position", "log10_grad_norm"])
@dataclasses.dataclass(frozen=True)
class LossGradient(_Record):
    """``position [T]`` and ``log10_grad_norm [T]`` (see :func:`loss_gradient_by_position`)."""

    position: Any
    log10_grad_norm: Any


@_pytree(["mean", "frac_low", "frac_high"])
@dataclasses.dataclass(frozen=True)
class GateSummary(_Record):
    """One gate ``g``: ``mean`` of ``g``, ``frac_low = P(g < low)``, ``frac_high = P(g > high)``."""

    mean: Any
    frac_low: Any
    frac_high: Any


@_pytree(["q25", "median", "q75", "q10", "q90"])
@dataclasses.dataclass(frozen=True)
class TimeScale(_Record):
    """Quantiles of the memory time-scale ``τ = -1 / ln keep`` (in steps): the quartiles
    ``q25, median, q75`` and the deciles ``q10, q90`` (the spread across units and steps)."""

    q25: Any
    median: Any
    q75: Any
    q10: Any
    q90: Any


@_pytree(["gates", "timescale", "cell_norm"], ("keep_gate", "low", "high"))
@dataclasses.dataclass(frozen=True)
class GateStats(_Record):
    """See :func:`gate_stats`. ``gates``: ``{name: GateSummary}`` (``{}`` for an ungated
    cell); ``keep_gate``: ``cell.keep_gate`` (``"f"``, ``"z"``, ``"1-f"``, ...) or None;
    ``timescale``: a :class:`TimeScale` of the keep gate or None; ``cell_norm [T]``: mean
    ``‖c_t‖`` over the batch for LSTMs, else None; ``low``/``high``: the saturation thresholds."""

    gates: dict[str, GateSummary]
    keep_gate: str | None
    timescale: TimeScale | None
    cell_norm: Any
    low: float
    high: float


# ---- shared pieces -----------------------------------------------------------------------
def _ravel(tree):
    """A carry's leaves ``[..., X_i]`` concatenated into ``[..., X]``."""
    return jnp.concatenate(jax.tree.leaves(tree), axis=-1)


def _unravel(vec, like):
    """Inverse of :func:`_ravel`, in the dtypes of ``like``'s leaves."""
    leaves, treedef = jax.tree.flatten(like)
    cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1]
    parts = jnp.split(vec, cuts, axis=-1)
    return treedef.unflatten([p.astype(leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)])


def _bits(dtype):
    info = jnp.finfo(dtype)
    return info, (jnp.int32 if info.bits == 32 else jnp.int64)


def _pow2(k, dtype):
    """``2^k`` for int ``k`` in the normal range, built from its exponent bits (exact)."""
    info, itype = _bits(dtype)
    return jax.lax.bitcast_convert_type((k.astype(itype) + (info.maxexp - 1)) << info.nmant, dtype)


def _times_pow2(x, k):
    """``x · 2^k`` for int ``k`` (clipped to ``±252``): exact unless it over/underflows. Two
    bit-built factors, much cheaper to compile than ``jnp.ldexp``."""
    k = jnp.clip(k, -252, 252)
    half = k // 2
    return x * _pow2(half, x.dtype) * _pow2(k - half, x.dtype)


def _rescale(a):
    """``a [..., X] = 2^e · u`` exactly, ``max|u|`` in ``[0.5, 1)`` (``e = _NO_EXP``, ``u = 0``
    for a zero vector). ``e`` is read from the exponent bits of ``max|a|`` (as ``frexp``)."""
    peak = jnp.max(jnp.abs(a), axis=-1)
    info, itype = _bits(a.dtype)
    field = (jax.lax.bitcast_convert_type(peak, itype) >> info.nmant) & ((1 << info.nexp) - 1)
    e = (field - (info.maxexp - 2)).astype(jnp.int32)
    return _times_pow2(a, -e[..., None]), jnp.where(peak > 0, e, _NO_EXP)


def _log_norm(u):
    """``ln ‖u‖₂`` over the last axis (``-inf`` for zero), in float32 or wider."""
    u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
    return jnp.log(jnp.sqrt(jnp.sum(u * u, axis=-1)))


def _log10_power_mean(E, r, mask, p: int):
    """``log10 (mean_mask (2^E e^r)^p)^(1/p)`` over the last axis, without underflow.

    ``nan`` where ``mask`` is empty, ``-inf`` where every masked value is 0.
    """
    ok = mask & jnp.isfinite(r)
    m = jnp.max(jnp.where(ok, E, _NO_EXP), axis=-1)
    m = jnp.where(jnp.any(ok, axis=-1), m, 0)
    z = p * ((E - m[..., None]).astype(r.dtype) * math.log(2.0) + r)
    total = jnp.sum(jnp.where(mask, jnp.exp(z), 0.0), axis=-1)
    count = jnp.sum(mask, axis=-1)
    return m.astype(r.dtype) * _LOG10_2 + jnp.log10(total / count) / p


def _masked_step(cell: Cell, params, s, xp, valid):
    """``(s', y)`` of one step, holding the carry (and zeroing ``y``) where not ``valid``."""
    new, y = cell.recur(params, s, xp)
    if valid is None:
        return new, y
    return tree_where(valid, new, s), jnp.where(valid[..., None], y, jnp.zeros_like(y))


def _flatten_batch(cell, xs, seq_lengths, who: str):
    """``(xs [T, N, D], lengths [N] or None, batch_shape)`` after checking the inputs."""
    _check_cell(cell, who)
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"{who}: xs must be [*batch, T, D]; got shape {list(xs.shape)}")
    batch_shape, (T, D) = tuple(xs.shape[:-2]), xs.shape[-2:]
    if T < 1:
        raise ValueError(f"{who}: xs has no time steps (shape {list(xs.shape)})")
    N = math.prod(batch_shape)
    if N == 0:
        raise ValueError(
            f"{who}: xs holds no sequences (batch shape {list(batch_shape)}, xs shape "
            f"{list(xs.shape)}); pass at least one sequence"
        )
    lengths = _check_seq_lengths(seq_lengths, batch_shape, T, who)
    xs_TND = jnp.moveaxis(xs.reshape(N, T, D), 1, 0)
    return xs_TND, None if lengths is None else lengths.reshape(N), batch_shape


@functools.partial(jax.jit, static_argnames="cell")
def _forward(cell: Cell, params, xs_TND, lengths_N):
    """``(xp [T, N, P], s_{t-1}, s_t (carries, leaves [T, N, .]), ys [T, N, O], valid [T, N]
    or None)``."""
    T, N = xs_TND.shape[:2]
    ys, _, carries = scan(cell, params, xs_TND, seq_lengths=lengths_N, time_major=True,
                          return_carries=True)
    init = cell.initial_carry(params, (N,))
    prev = jax.tree.map(
        lambda c0, c: jnp.concatenate([c0[None].astype(c.dtype), c[:-1]], axis=0), init, carries
    )
    valid = None if lengths_N is None else jnp.arange(T)[:, None] < lengths_N[None]
    return cell.project(params, xs_TND), prev, carries, ys, valid


def _steps(prev, xp, valid, start: int = 0):
    """The per-step scan inputs ``(s_{t-1}, xp_t, valid_t)`` for ``t >= start``."""
    cut = lambda a: None if a is None else a[start:]
    return jax.tree.map(cut, prev), xp[start:], cut(valid)


# ---- gradient flow ---------------------------------------------------------------------------
def gradient_flow(
    cell: Cell,
    params,
    xs,
    *,
    seq_lengths=None,
    num_probes: int = 8,
    key=None,
    probes=None,
) -> GradientFlow:
    r"""How much a perturbation of the carry ``k`` steps back reaches the last carry.

    With ``J_{b,k} = ∂s_{L_b-1} / ∂s_{L_b-1-k}`` (the whole carry, see the module docstring)::

        log10_gain[k] = log10 sqrt( mean_{v, b : k < L_b} ‖J_{b,k}ᵀ v‖² / ‖v‖² )

    for ``k = 0 … T-1`` (``lag[k] = k``; ``log10_gain[0] = 0``), over probe vectors ``v`` and
    the sequences ``b`` long enough (``nan`` where none is). With Gaussian probes this
    estimates ``‖J_{b,k}‖_F / √X``. Computed by VJPs of one ``cell.recur`` step at a time
    in a reverse ``lax.scan`` over the stored forward carries, rescaled every step.

    Args:
      xs: ``[*B, T, D]``; ``seq_lengths``: ``[*B]`` or None.
      num_probes, key: ``v ~ N(0, I_X)``, drawn as ``jax.random.normal(key, (num_probes,
        N, X))`` with ``N = prod(B)``; without ``key``, a fixed draw from
        ``numpy.random.default_rng(0)`` (the same probes every call).
      probes: explicit probes ``[M, *B, X]`` instead (e.g. the basis ``e_i`` for the exact
        ``‖J‖_F / √X``); overrides ``num_probes`` and ``key``.
    """
    xs_TND, lengths_N, batch_shape = _flatten_batch(cell, xs, seq_lengths, "gradient_flow")
    N = xs_TND.shape[1]
    carry = jax.eval_shape(lambda p: cell.initial_carry(p, ()), params)
    X = sum(leaf.shape[-1] for leaf in jax.tree.leaves(carry))
    if probes is None:
        if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
            raise ValueError(f"gradient_flow: num_probes={num_probes!r} must be a positive int")
        shape = (num_probes, N, X)
        if key is None:  # fixed probes, free to build (no PRNG program to compile)
            probes = np.random.default_rng(0).standard_normal(shape, np.float32)
        else:
            probes = jax.random.normal(key, shape, jnp.float32)
    else:
        probes = jnp.asarray(probes)
        if probes.ndim < 2 or probes.shape[1:] != (*batch_shape, X):
            raise ValueError(
                f"gradient_flow: probes has shape {list(probes.shape)}; expected "
                f"[M, {', '.join(map(str, (*batch_shape, X)))}] ([M, *batch, carry width X])"
            )
        probes = probes.reshape(probes.shape[0], N, X)
    xp, prev, _, _, valid = _forward(cell, params, xs_TND, lengths_N)
    return GradientFlow(*_gradient_flow(cell, params, xp, prev, valid, lengths_N, probes))


@functools.partial(jax.jit, static_argnames="cell")
def _gradient_flow(cell: Cell, params, xp, prev, valid, lengths_N, probes_MNX):
    """``(lag, log10_gain)``."""
    T, N = xp.shape[:2]
    dt = jnp.result_type(*jax.tree.leaves(prev), jnp.float32)
    u0, E0 = _rescale(probes_MNX.astype(dt))  # [M, N, X], [M, N]
    r0 = _log_norm(u0)

    def back(state, inputs):
        u, E = state
        s_prev, xp_t, valid_t = inputs
        _, vjp = jax.vjp(lambda s: _masked_step(cell, params, s, xp_t, valid_t)[0], s_prev)
        a = jax.vmap(lambda w: _ravel(vjp(_unravel(w, s_prev))[0]))(u).astype(dt)
        u, e = _rescale(a)
        E = jnp.where(e > _NO_EXP, E + e, E)
        return (u, E), (E - E0, _log_norm(u) - r0)

    # Output j is the gain to s_j (step t = j + 1 maps s_j to s_{j+1}); s_{T-1} gains 1.
    _, (E_T, r_T) = jax.lax.scan(back, (u0, E0), _steps(prev, xp, valid, 1), reverse=True)
    E_T = jnp.concatenate([E_T, jnp.zeros_like(E0)[None]], axis=0)  # [T, M, N], index τ
    r_T = jnp.concatenate([r_T, jnp.zeros_like(r0)[None]], axis=0)
    # Lag k of sequence b is τ = L_b - 1 - k.
    if lengths_N is None:
        E_k, r_k = jnp.flip(E_T, 0).reshape(T, -1), jnp.flip(r_T, 0).reshape(T, -1)
        mask = jnp.ones(E_k.shape, bool)
    else:
        # [T(k), N]; a traced length above T (unchecked under jit) acts as T
        tau = jnp.minimum(lengths_N, T)[None, :] - 1 - jnp.arange(T)[:, None]
        idx = jnp.broadcast_to(jnp.clip(tau, 0, T - 1)[:, None, :], E_T.shape)
        E_k = jnp.take_along_axis(E_T, idx, axis=0).reshape(T, -1)
        r_k = jnp.take_along_axis(r_T, idx, axis=0).reshape(T, -1)
        mask = jnp.broadcast_to((tau >= 0)[:, None, :], idx.shape).reshape(T, -1)
    return jnp.arange(T, dtype=jnp.int32), _log10_power_mean(E_k, r_k, mask, 2)


# ---- loss gradient by position -------------------------------------------------------------
def loss_gradient_by_position(
    cell: Cell,
    params,
    xs,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    seq_lengths=None,
) -> LossGradient:
    r"""Where in the sequence the loss can still be moved: ``log10 E_b ‖∂L/∂x_{b,t}‖`` per ``t``.

    ``L = loss_fn(ys)``, a scalar, with ``ys [*B, T, H_out]`` the outputs of
    ``lj.scan(cell, params, xs, seq_lengths=seq_lengths)`` (zero at padded steps). A model's
    readout and a task's loss go inside ``loss_fn``, e.g. for :mod:`lstmjax.train`'s model
    ``lambda ys: task.loss(ys @ W_HO + b_O, batch)``. Then::

        log10_grad_norm[t] = log10 mean_{b : t < L_b} ‖∂L/∂x_{b,t}‖₂     (position[t] = t)

    (``nan`` where no sequence reaches ``t``). The backward pass is the chain rule run by
    hand, step by step, on ``δ_t = ∂L/∂s_t`` kept as ``2^E · u``, so a gradient that float32
    autodiff would flush to 0 is still measured. ``loss_fn`` is called outside ``jit``.
    """
    xs_TND, lengths_N, batch_shape = _flatten_batch(
        cell, xs, seq_lengths, "loss_gradient_by_position"
    )
    T, N = xs_TND.shape[:2]
    xp, prev, _, ys_TNO, valid = _forward(cell, params, xs_TND, lengths_N)
    to_batch = lambda a: jnp.moveaxis(a, 0, 1).reshape(*batch_shape, T, a.shape[-1])
    ys = to_batch(ys_TNO)
    out = jax.eval_shape(loss_fn, ys)
    if not (hasattr(out, "shape") and out.shape == ()):
        raise ValueError(
            f"loss_gradient_by_position: loss_fn(ys) must return a scalar; got "
            f"{getattr(out, 'shape', type(out).__name__)} for ys of shape {list(ys.shape)}"
        )
    gy = jax.grad(loss_fn)(ys)
    gy_TNO = jnp.moveaxis(gy.reshape(N, T, -1), 1, 0)
    position = jnp.arange(T, dtype=jnp.int32)
    return LossGradient(position, _loss_gradient(cell, params, xs_TND, xp, prev, valid, gy_TNO))


@functools.partial(jax.jit, static_argnames="cell")
def _loss_gradient(cell: Cell, params, xs_TND, xp, prev, valid, gy_TNO):
    T, N = xs_TND.shape[:2]
    dt = jnp.result_type(*jax.tree.leaves(prev), jnp.float32)
    X = sum(leaf.shape[-1] for leaf in jax.tree.leaves(prev))

    def back(state, inputs):
        d_u, d_E = state  # δ_t = ∂L/∂s_t = 2^{d_E} d_u
        s_prev, xp_t, valid_t, gy_t = inputs
        g_u, g_E = _rescale(gy_t.astype(dt))
        m = jnp.maximum(d_E, g_E)  # both cotangents scaled by 2^-m: each at most 1
        ct_s = _times_pow2(d_u, (d_E - m)[:, None])
        ct_y = _times_pow2(g_u, (g_E - m)[:, None])
        (_, y), vjp = jax.vjp(
            lambda s, x: _masked_step(cell, params, s, x, valid_t), s_prev, xp_t
        )
        ds, dxp = vjp((_unravel(ct_s, s_prev), ct_y.astype(y.dtype)))
        u, e = _rescale(_ravel(ds).astype(dt))
        return (u, jnp.where(e > _NO_EXP, m + e, _NO_EXP)), (dxp, m)

    init = (jnp.zeros((N, X), dt), jnp.full((N,), _NO_EXP, jnp.int32))
    inputs = (*_steps(prev, xp, valid), gy_TNO)
    _, (dxp_T, m_T) = jax.lax.scan(back, init, inputs, reverse=True)
    # ∂L/∂x_t = 2^{m_t} · project's (linear) VJP of dxp_t, all positions in one matmul.
    _, project_vjp = jax.vjp(lambda x: cell.project(params, x), xs_TND)
    (dx,) = project_vjp(dxp_T.astype(xp.dtype))
    u, e = _rescale(dx.astype(dt))
    E = jnp.where(e > _NO_EXP, m_T + e, _NO_EXP)  # [T, N]
    mask = jnp.ones((T, N), bool) if valid is None else valid
    return _log10_power_mean(E, _log_norm(u), mask, 1)


# ---- gate statistics -----------------------------------------------------------------------
def _check_gates_defined(cell: Cell) -> None:
    """Raise if ``cell`` inherits a gated ``gate_activations`` but overrides ``recur``."""
    mro = type(cell).__mro__
    owner = lambda attr: next(k for k in mro if attr in vars(k))
    gates, recur = owner("gate_activations"), owner("recur")
    if gates is not Cell and recur is not gates and issubclass(recur, gates):
        raise TypeError(
            f"gate_stats: {recur.__name__} overrides recur but inherits gate_activations from "
            f"{gates.__name__}, which would describe other gates; override "
            f"gate_activations (and keep_gate) in {recur.__name__}"
        )


def gate_stats(cell: Cell, params, xs, *, seq_lengths=None, low: float = 0.05,
               high: float = 0.95) -> GateStats:
    r"""Gate use over a batch: per gate ``g`` of ``cell.gate_activations`` (i, f, o for
    LSTMs; r, z for GRUs; f for the MGU; z for minGRU; f, i, f_norm, i_norm for minLSTM;
    lambda_abs = ``|λ|`` for the LRU; none for rnn, irnn, indrnn), over units, batch and
    valid steps ``t < L_b``::

        mean = E[g],   frac_low = P(g < low),   frac_high = P(g > high)

    For the keep gate (``cell.keep_gate``: the gate multiplying the old state; ``f`` in
    ``c' = f * c + i * g``, ``z`` in our GRU's ``h' = (1 - z) * n + z * h``, ``1-f`` in the
    paper MGU, ``1-z`` in minGRU), the memory time-scale ``τ = -1 / ln keep`` (a value
    decays to ``1/e`` in ``τ`` steps): its 10/25/50/75/90 % quantiles (order statistics,
    nearest rank) in ``timescale``. ``ln keep`` is ``log1p(-g)`` for ``1-g``, so a tiny ``g``
    keeps its precision; ``keep`` rounding to 1 gives ``τ = inf`` (``None`` in ``to_dict``). No keep
    gate (NFG: ``f = 1``): ``timescale = None``. LSTMs (and ``ln_lstm``) also get
    ``cell_norm[t] = mean_{b : t < L_b} ‖c_{b,t}‖₂``. An ungated cell gives ``gates = {}``
    and None for the rest.
    """
    xs_TND, lengths_N, _ = _flatten_batch(cell, xs, seq_lengths, "gate_stats")
    if not 0 <= low < high <= 1:
        raise ValueError(f"gate_stats: need 0 <= low < high <= 1 (got low={low}, high={high})")
    _check_gates_defined(cell)
    xp, prev, carries, _, valid = _forward(cell, params, xs_TND, lengths_N)
    gates, timescale, cell_norm = _gate_stats(cell, params, xp, prev, carries, valid, low, high)
    return GateStats(gates, cell.keep_gate if gates else None, timescale, cell_norm,
                     float(low), float(high))


_QUANTILES = (0.25, 0.5, 0.75, 0.1, 0.9)  # in TimeScale's field order


def _nearest_ranks(values, mask):
    """The :data:`_QUANTILES` order statistics (nearest rank ``round(q (n-1))``) of
    ``values[mask]``."""
    ranked = jnp.sort(jnp.where(mask, values, jnp.inf).ravel())
    n = jnp.sum(mask)
    idx = jnp.round(jnp.array(_QUANTILES) * (n - 1)).astype(jnp.int32)
    return jnp.where(n > 0, ranked[jnp.clip(idx, 0, ranked.size - 1)], jnp.nan)


@functools.partial(jax.jit, static_argnames="cell")
def _gate_stats(cell: Cell, params, xp, prev, carries, valid, low, high):
    T, N = xp.shape[:2]
    valid = jnp.ones((T, N), bool) if valid is None else valid
    acts = cell.gate_activations(params, prev, xp)  # {name: [T, N, H]}
    f32 = lambda a: a.astype(jnp.promote_types(a.dtype, jnp.float32))

    gates = {}
    for shape in {g.shape for g in acts.values()}:  # one reduction per gate width, not per gate
        names = [k for k, g in acts.items() if g.shape == shape]
        g = jnp.stack([f32(acts[k]) for k in names])  # [G, T, N, H]
        stats = jnp.stack([g, (g < low).astype(g.dtype), (g > high).astype(g.dtype)])
        w = valid[:, :, None].astype(g.dtype)
        means = jnp.sum(stats * w, axis=(2, 3, 4)) / (jnp.sum(w) * shape[-1])  # [3, G]
        gates.update({k: GateSummary(*means[:, j]) for j, k in enumerate(names)})
    timescale = None
    keep = cell.keep_gate
    if acts and keep is not None:
        complement = keep.startswith("1-")
        g = f32(acts[keep[2:] if complement else keep])
        log_keep = jnp.log1p(-g) if complement else jnp.log(g)  # ln keep, increasing in keep
        q = _nearest_ranks(log_keep, jnp.broadcast_to(valid[..., None], g.shape))
        tau = jnp.where(q == 0, jnp.inf, -1.0 / q)  # ln keep = 0: keep = 1, τ = inf
        timescale = TimeScale(*(tau[i] for i in range(len(_QUANTILES))))
    cell_norm = None
    if acts and isinstance(cell, _CELL_STATE):
        c = f32(carries[1])  # [T, N, H]: c_t
        norms = jnp.sqrt(jnp.sum(c * c, axis=-1))
        cell_norm = jnp.sum(jnp.where(valid, norms, 0.0), axis=1) / jnp.sum(valid, axis=1)
    return gates, timescale, cell_norm

