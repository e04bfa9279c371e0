"""Cells with a *linear* recurrence, trained with a parallel scan: minGRU, minLSTM, LRU.

Each step is an affine map of the state whose coefficients depend on the input
only, ``h_t = a_t ⊙ h_{t-1} + b_t``, so the whole sequence is a prefix product of
affine maps, computed by ``jax.lax.associative_scan`` in O(log T) depth::

    (a_1, b_1) ∘ (a_2, b_2) = (a_1 a_2,  a_2 b_1 + b_2)        (1 before 2)

``mode="parallel"`` runs that scan; ``mode="sequential"`` runs the ordinary step
loop (:meth:`Cell.reference_recur_scan` over :meth:`recur`); ``mode="auto"`` (default) picks
parallel on GPU/TPU and sequential on CPU, where the scan's O(log T) passes over
memory lose to the loop (measured in ``benchmarks/RESULTS.md``). Both give the same
outputs, carries and gradients (``tests/test_parallel_cells.py``).

Masks and resets are affine maps too, folded into the elements before the scan:
a padded step (``valid_T`` False) is the identity ``(1, 0)`` with output 0; a
reset replaces the state by the initial carry ``c0`` first, so the step becomes
``(0, a·c0 + b)`` (``(0, c0)`` if also padded). The initial carry enters as
``b_0 ← a_0 h_0 + b_0``.

minGRU/minLSTM with ``log_space=True`` (default, as Feng et al. 2024) keep the
candidate positive through ``g(x) = x + ½ (x ≥ 0), σ(x) (x < 0)`` and scan the
pairs ``(log a, log b)`` with ``(la_1 + la_2, logaddexp(lb_1 + la_2, lb_2))``; the
initial carry enters linearly (:func:`log_linear_scan`), so it may have any sign.
With ``log_space=False`` the candidate is linear and the scan runs on ``(a, b)``.

minGRU/minLSTM scan real numbers; only the LRU's recurrence (and its scan) is complex.
Params are plain dicts; :mod:`lstmjax.cells` registers the classes as ``mingru``,
``minlstm`` and ``lru``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lstmjax.cells._base import Cell, check_positive_int, choose

MODES = {
    "auto": "parallel on accelerators, sequential on CPU",
    "parallel": "associative_scan",
    "sequential": "lax.scan over recur",
}


def _parallel(mode: str) -> bool:
    """Whether ``mode`` runs the associative scan here (``auto``: not on CPU, where the
    O(log T)-level scan is 3-9x slower than the step loop: ``benchmarks/RESULTS.md``)."""
    return mode == "parallel" or (mode == "auto" and jax.default_backend() != "cpu")


# ---- the shared parallel linear scan ---------------------------------------------------
def _safe_log(x):
    """``log x`` with ``log 0 = -inf`` and a zero (not NaN) gradient there."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def _logaddexp(x, y):
    """``log(e^x + e^y)`` whose value and gradient stay finite when both are ``-inf``."""
    m = jnp.maximum(x, y)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = jnp.exp(x - m) + jnp.exp(y - m)
    return m + _safe_log(s)


def _combine_linear(e1, e2):
    a1, b1 = e1
    a2, b2 = e2
    return a1 * a2, a2 * b1 + b2


def _combine_log(e1, e2):
    la1, lb1 = e1
    la2, lb2 = e2
    return la1 + la2, _logaddexp(lb1 + la2, lb2)


def _fold(a, b, h0, valid, reset, reset0=None):
    """Fold resets (to ``reset0``, default ``h0``), masks and ``h0`` into the affine
    elements (linear space)."""
    if valid is not None:
        v = valid[..., None]
        a, b = jnp.where(v, a, jnp.ones_like(a)), jnp.where(v, b, jnp.zeros_like(b))
    if reset is not None:
        r = reset[..., None]
        b = jnp.where(r, a * (h0 if reset0 is None else reset0)[None] + b, b)
        a = jnp.where(r, jnp.zeros_like(a), a)
    b = b.at[0].add(a[0] * h0)
    return a, b


def linear_scan(a_T, b_T, h0, valid_T=None, reset_T=None, reset0=None):
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for all t by ``associative_scan`` (real or complex).

    ``a_T``/``b_T`` ``[T, *B, N]``, ``h0 [*B, N]``; masks as in ``Cell.recur_scan``; a reset
    restores ``reset0`` (default ``h0``).
    """
    a, b = _fold(a_T, b_T, h0, valid_T, reset_T, reset0)
    return jax.lax.associative_scan(_combine_linear, (a, b), axis=0)[1]


def log_linear_scan(la_T, lb_T, h0, valid_T=None, reset_T=None, reset0=None):
    """:func:`linear_scan` with ``a = e^la``, ``b = e^lb`` (``b > 0``), scanned in log space.

    ``h`` is linear in the initial carry ``h0`` (or, after a reset, the reset carry ``reset0``,
    default ``h0``), so ``h_t = A_t ⊙ s_t + e^{lh_t}`` with ``s_t`` the carry last injected:
    ``lh`` is the log-space scan with a zero carry and ``A_t`` (the product of ``a`` since
    the last reset) a linear-space scan; no log of the carry is taken, so it may be zero or
    negative and its gradient stays exact.
    """
    la, lb = la_T, lb_T
    if valid_T is not None:
        v = valid_T[..., None]
        la = jnp.where(v, la, jnp.zeros_like(la))
        lb = jnp.where(v, lb, jnp.full_like(lb, -jnp.inf))
    if reset_T is not None:
        la = jnp.where(reset_T[..., None], jnp.full_like(la, -jnp.inf), la)
    _, lh = jax.lax.associative_scan(_combine_log, (la, lb), axis=0)
    a = jnp.exp(la_T)
    coef = linear_scan(a, jnp.zeros_like(a), jnp.ones_like(h0), valid_T, reset_T)
    start = h0[None]
    if reset_T is not None and reset0 is not None:
        seen = jnp.cumsum(reset_T.astype(jnp.int32), axis=0) > 0  # a reset at or before t
        start = jnp.where(seen[..., None], reset0[None], start)
    return coef * start + jnp.exp(lh)


def _finish(h_T, ys_T, valid_T, return_carries, to_carry):
    """``Cell.recur_scan``'s return value from the states ``h_T`` and outputs ``ys_T``."""
    if valid_T is not None:
        ys_T = jnp.where(valid_T[..., None], ys_T, jnp.zeros_like(ys_T))
    carries = to_carry(h_T)
    final = jax.tree.map(lambda c: c[-1], carries)
    return (final, ys_T, carries) if return_carries else (final, ys_T)


# ---- minGRU / minLSTM --------------------------------------------------------------------
def _g(x):
    """Feng et al.'s positive activation: ``x + ½`` for ``x ≥ 0``, ``σ(x)`` below."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def _log_g(x):
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


@dataclasses.dataclass(frozen=True)
class _MinCell(Cell):
    """Shared parts of minGRU/minLSTM: params ``W_x [D, G*H]``, ``b [G*H]``; carry ``h``.

    ``coefficients``/``log_coefficients`` are the per-step ``(a, b)`` of the real linear
    recurrence ``h' = a ⊙ h + b``."""

    mode: str = "auto"
    log_space: bool = True

    def _validate(self):
        choose("mode", self.mode, MODES)

    def init(self, key, input_size):
        self._check_input_size(input_size)
        GH = self.projection_size
        k_x, k_b = jax.random.split(key)
        params = {"W_x": self._kernel(k_x, (input_size, GH), "kernel_init")}
        if self.use_bias:
            params["b"] = self._bias(k_b, GH)
        return params

    def initial_carry(self, params, batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), self.hidden_size), self.param_dtype)

    def _candidate(self, k):
        return _g(k) if self.log_space else k

    def coefficients(self, xp):
        """``(a, b)`` of ``h' = a ⊙ h + b`` from the projected input."""
        raise NotImplementedError

    def log_coefficients(self, xp):
        """``(log a, log b)`` (``log_space`` only)."""
        raise NotImplementedError

    def recur(self, params, carry, xp):
        self._check_recur(params, xp)
        a, b = self.coefficients(xp)
        h = a * carry + b
        return h, h

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan``; in parallel mode a real associative scan (log space with
        ``log_space``: :func:`log_linear_scan`, else :func:`linear_scan`)."""
        if not _parallel(self.mode):
            return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T,
                                             unroll=unroll, return_carries=return_carries,
                                             reset_carry=reset_carry)
        if self.log_space:
            la, lb = self.log_coefficients(xp_T)
            h_T = log_linear_scan(la, lb, carry, valid_T, reset_T, reset_carry)
        else:
            a, b = self.coefficients(xp_T)
            h_T = linear_scan(a, b, carry, valid_T, reset_T, reset_carry)
        return _finish(h_T, h_T, valid_T, return_carries, lambda h: h)


@dataclasses.dataclass(frozen=True)
class MinGRUCell(_MinCell):
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): gates see only ``x``.

    With ``xp = x @ W_x + b`` split into blocks ``(k_z, k_h)``::

        z  = σ(k_z)
        h̃  = g(k_h)              (k_h if not log_space)
        h' = (1 - z) ⊙ h + z ⊙ h̃

    so ``a = 1 - z``, ``b = z ⊙ h̃``; in log space ``log a = -softplus(k_z)``,
    ``log b = -softplus(-k_z) + log g(k_h)``. Output ``y = h'``.
    """

    @property
    def num_gates(self) -> int:
        return 2

    def coefficients(self, xp):
        H = self.hidden_size
        z = jax.nn.sigmoid(xp[..., :H])
        return 1.0 - z, z * self._candidate(xp[..., H:])

    def log_coefficients(self, xp):
        H = self.hidden_size
        k_z = xp[..., :H]
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + _log_g(xp[..., H:])

    def gate_activations(self, params, carry, xp):
        """``{"z": z}``, ``[*B, H]`` (input-only: ``carry`` is not read)."""
        return {"z": jax.nn.sigmoid(xp[..., : self.hidden_size])}

    @property
    def keep_gate(self):
        """``"1-z"``: ``h' = (1 - z) ⊙ h + z ⊙ h̃``."""
        return "1-z"


@dataclasses.dataclass(frozen=True)
class MinLSTMCell(_MinCell):
    r"""minLSTM (Feng et al. 2024): normalised, input-only forget and input gates.

    With ``xp = x @ W_x + b`` split into blocks ``(k_f, k_i, k_h)``::

        f, i = σ(k_f), σ(k_i)
        f', i' = f / (f + i), i / (f + i)
        h̃  = g(k_h)              (k_h if not log_space)
        h' = f' ⊙ h + i' ⊙ h̃

    With ``d = softplus(-k_f) - softplus(-k_i)``: ``f' = σ(-d)``, ``i' = σ(d)``, and in
    log space ``log f' = -softplus(d)``, ``log i' = -softplus(-d)``. Output ``y = h'``.
    """

    @property
    def num_gates(self) -> int:
        return 3

    def _d(self, xp):
        H = self.hidden_size
        return jax.nn.softplus(-xp[..., :H]) - jax.nn.softplus(-xp[..., H : 2 * H])

    def coefficients(self, xp):
        d, k_h = self._d(xp), xp[..., 2 * self.hidden_size :]
        return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * self._candidate(k_h)

    def log_coefficients(self, xp):
        d, k_h = self._d(xp), xp[..., 2 * self.hidden_size :]
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + _log_g(k_h)

    def gate_activations(self, params, carry, xp):
        """``{"f": f, "i": i, "f_norm": f', "i_norm": i'}``, each ``[*B, H]``."""
        H, d = self.hidden_size, self._d(xp)
        return {
            "f": jax.nn.sigmoid(xp[..., :H]), "i": jax.nn.sigmoid(xp[..., H : 2 * H]),
            "f_norm": jax.nn.sigmoid(-d), "i_norm": jax.nn.sigmoid(d),
        }  # fmt: skip

    @property
    def keep_gate(self):
        """``"f_norm"``: ``h' = f' ⊙ h + i' ⊙ h̃``."""
        return "f_norm"


# ---- LRU ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LRUCell(Cell):
    r"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks").

    A complex diagonal recurrence of ``N = state_size`` (default ``hidden_size``) modes::

        λ  = exp(-exp(ν_log) + i·exp(θ_log))          (exponential parametrisation, |λ| < 1)
        γ  = exp(γ_log)                                (normalisation, init √(1 - |λ|²))
        h' = λ ⊙ h + γ ⊙ (B x)                         [B_re, B_im] = W_x  [D, 2N]
        y  = Re(h' C) + D x                            C = C_re + i·C_im  [N, H]

    ``D x`` is the paper's skip ``D ⊙ x`` (``D [H]``) when ``input_size == hidden_size``,
    and a dense ``D [input_size, H]`` otherwise. Design: ``y`` needs ``x`` at recur
    time, so the *projection* carries it: ``project(x) = [Re(γ⊙Bx), Im(γ⊙Bx), D x]``
    (width ``2N + H``), and ``recur`` reads ``D x`` back from its last ``H`` columns.
    The carry is ``(Re h, Im h)`` (two real ``[*B, N]`` arrays).

    Init (ring init): ``|λ| ~ U`` on the ring ``[r_min, r_max]`` (uniform in area),
    ``arg λ ~ U[0, max_phase]``; ``B ~ CN(0, 1/D)`` (``N(0, 1/(2D))`` per part),
    ``C ~ CN(0, 1/N)``, ``D ~ N(0, 1)`` (``N(0, 1/D)`` when dense). Params:
    ``nu_log, theta_log, gamma_log [N]``, ``W_x [D, 2N]``, ``C_re, C_im [N, H]``, ``D``.
    """

    output_leaf = None  # y is read out of the complex state, not a carry leaf (no zoneout)

    state_size: int = 0
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    mode: str = "auto"

    def _validate(self):
        choose("mode", self.mode, MODES)
        if self.state_size:
            check_positive_int("state_size", self.state_size)
        if not 0 <= self.r_min < self.r_max <= 1:
            raise ValueError(
                f"need 0 <= r_min < r_max <= 1 (got r_min={self.r_min}, r_max={self.r_max})"
            )
        if not self.max_phase > 0:
            raise ValueError(f"max_phase={self.max_phase!r} must be positive")

    @property
    def num_gates(self) -> int:
        """``W_x`` holds ``[Re B, Im B]``: two ``N``-wide blocks (``N = num_modes``)."""
        return 2

    @property
    def num_modes(self) -> int:
        return self.state_size or self.hidden_size

    @property
    def projection_size(self) -> int:
        """``project`` returns ``[Re(γ⊙Bx), Im(γ⊙Bx), D x]``: ``2N + H`` columns."""
        return 2 * self.num_modes + self.hidden_size

    def init(self, key, input_size):
        self._check_input_size(input_size)
        N, H, D = self.num_modes, self.hidden_size, input_size
        dt = self.param_dtype
        k_u1, k_u2, k_b, k_c, k_d = jax.random.split(key, 5)
        u1 = jax.random.uniform(k_u1, (N,), jnp.float32)
        u2 = jax.random.uniform(k_u2, (N,), jnp.float32)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))
        theta_log = jnp.log(self.max_phase * u2)
        mod = jnp.exp(-jnp.exp(nu_log))
        gamma_log = jnp.log(jnp.sqrt(1.0 - mod**2))
        W_x = jax.random.normal(k_b, (D, 2 * N), jnp.float32) / math.sqrt(2 * D)
        c = jax.random.normal(k_c, (2, N, H), jnp.float32) / math.sqrt(N)
        d_shape = (H,) if D == H else (D, H)
        skip = jax.random.normal(k_d, d_shape, jnp.float32)
        if D != H:
            skip = skip / math.sqrt(D)
        params = {
            "nu_log": nu_log, "theta_log": theta_log, "gamma_log": gamma_log,
            "W_x": W_x, "C_re": c[0], "C_im": c[1], "D": skip,
        }
        return jax.tree.map(lambda a: a.astype(dt), params)

    def initial_carry(self, params, batch_shape=()):
        z = jnp.zeros((*tuple(batch_shape), self.num_modes), self.param_dtype)
        return (z, z)

    def _lambda(self, params):
        """``(Re λ, Im λ)``."""
        mod = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return mod * jnp.cos(phase), mod * jnp.sin(phase)

    def gate_activations(self, params, carry, xp):
        """``{"lambda_abs": |λ|}`` broadcast to ``[*B, N]``: the factor each mode keeps per
        step (no gates; constant over inputs)."""
        mod = jnp.exp(-jnp.exp(params["nu_log"]))
        return {"lambda_abs": jnp.broadcast_to(mod, carry[0].shape)}

    @property
    def keep_gate(self):
        """``"lambda_abs"``: ``|h'| = |λ| |h|`` without input."""
        return "lambda_abs"

    def project(self, params, x):
        D = params["W_x"].shape[0]
        if x.shape[-1] != D:
            raise ValueError(
                f"LRU: input width mismatch: expected [..., {D}], got shape {tuple(x.shape)}"
            )
        gamma = jnp.exp(params["gamma_log"])
        skip = x * params["D"] if params["D"].ndim == 1 else x @ params["D"]
        return jnp.concatenate([(x @ params["W_x"]) * jnp.tile(gamma, 2), skip], axis=-1)

    def _split(self, xp):
        N = self.num_modes
        return xp[..., :N], xp[..., N : 2 * N], xp[..., 2 * N :]

    def _readout(self, params, h_re, h_im, skip):
        return h_re @ params["C_re"] - h_im @ params["C_im"] + skip

    def recur(self, params, carry, xp):
        self._check_recur(params, xp)
        h_re, h_im = carry
        l_re, l_im = self._lambda(params)
        b_re, b_im, skip = self._split(xp)
        new_re = l_re * h_re - l_im * h_im + b_re
        new_im = l_re * h_im + l_im * h_re + b_im
        return (new_re, new_im), self._readout(params, new_re, new_im, skip)

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan``; in parallel mode a complex associative scan."""
        if not _parallel(self.mode):
            return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T,
                                             unroll=unroll, return_carries=return_carries,
                                             reset_carry=reset_carry)
        l_re, l_im = self._lambda(params)
        b_re, b_im, skip = self._split(xp_T)
        lam = jax.lax.complex(l_re, l_im)
        a_T = jnp.broadcast_to(lam, b_re.shape)
        reset0 = None if reset_carry is None else jax.lax.complex(*reset_carry)
        h_T = linear_scan(a_T, jax.lax.complex(b_re, b_im), jax.lax.complex(*carry),
                          valid_T, reset_T, reset0)
        h_re, h_im = jnp.real(h_T), jnp.imag(h_T)
        ys = self._readout(params, h_re, h_im, skip)
        return _finish(h_re, ys, valid_T, return_carries, lambda _: (h_re, h_im))


__all__ = ["MinGRUCell", "MinLSTMCell", "LRUCell", "linear_scan", "log_linear_scan"]
