"""Layer-normalised recurrent cells (Ba, Kiros & Hinton 2016, "Layer Normalization").

``LN(a; α, β) = α ⊙ (a - μ) / sqrt(σ² + ε) + β`` with ``μ``, ``σ²`` the mean and (biased)
variance of ``a`` over its last axis. Choice: each pre-activation is normalised *jointly*
over all its gate blocks (one ``μ, σ`` per ``[G*H]`` row), as the paper's appendix writes
it (``LN(W_h h)`` of the whole stacked gate vector) and its authors' code does; per-block
normalisation (TF's ``LayerNormBasicLSTMCell``) is a different model. The shifts ``β`` of
``LN(x W_x)`` and ``LN(h W_h)`` enter only through their sum with the bias, so one bias
``b`` stands for ``β_x + β_h + b`` (an exact reparametrisation, no redundant parameters).
The input normalisation is hoisted out of the loop (``project``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lstmjax import init as _init
from lstmjax.cells._base import Cell
from lstmjax.fast import ln_lstm as _fast


def layer_norm(a, alpha, beta=None, eps: float = 1e-5):
    """``LN(a; α, β)`` over the last axis (``β`` None: no shift)."""
    d = a - jnp.mean(a, axis=-1, keepdims=True)
    out = alpha * (d * jax.lax.rsqrt(jnp.mean(d * d, axis=-1, keepdims=True) + eps))
    return out if beta is None else out + beta


class _LNCell(Cell):
    """Shared by the LN cells: ``ln_eps`` and the hoisted, normalised input projection."""

    def _check_ln_options(self):
        if not self.ln_eps > 0:
            raise ValueError(f"ln_eps={self.ln_eps!r} must be > 0 (the LN variance floor)")
        if self.chrono is not None and not self.use_bias:
            raise ValueError("chrono sets a bias: it needs use_bias=True")
        if self.chrono is not None and not self.chrono > 2:
            raise ValueError(f"chrono={self.chrono!r} must be a T_max > 2 (the longest gap)")

    def _ln_params(self, key, input_size):
        """``W_x [D, G*H]``, ``W_h [H, G*H]`` and the gains ``alpha_x, alpha_h [G*H]`` (ones)."""
        GH = self.projection_size
        ones = jnp.ones((GH,), self.param_dtype)
        k_x, k_h = jax.random.split(key)
        return {
            "W_x": self._kernel(k_x, (input_size, GH), "kernel_init"),
            "W_h": self._kernel(k_h, (self.hidden_size, GH), "recurrent_init"),
            "alpha_x": ones,
            "alpha_h": ones,
        }

    def project(self, params, x):
        """``xp = LN(x W_x; α_x) + b`` for whole sequences: ``[*, D] -> [*, G*H]``."""
        xw = Cell.project(self, {"W_x": params["W_x"]}, x)
        xp = layer_norm(xw, params["alpha_x"], eps=self.ln_eps)
        return xp + params["b"] if "b" in params else xp


@dataclasses.dataclass(frozen=True)
class LNLSTMCell(_LNCell):
    r"""Layer-normalised LSTM (Ba et al. 2016, appendix), gates i, f, g, o (PyTorch order)::

        z  = LN(x W_x; α_x) + LN(h W_h; α_h) + b         (joint LN over the 4H gates)
        i, f, o = σ(z_i), σ(z_f), σ(z_o) ;  g = tanh(z_g)
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(LN(c'; α_c, β_c))

    Params: ``W_x [D, 4H]``, ``W_h [H, 4H]``, gains ``alpha_x, alpha_h [4H]`` and
    ``alpha_c [H]`` (init 1), ``b [4H]`` and ``beta_c [H]`` (init 0; both absent with
    ``use_bias=False``). Carry ``(h, c)``; ``y = h'``. ``forget_bias`` sets ``b_f``;
    ``chrono`` = T_max sets ``b_f ~ log U[1, T_max-1]``, ``b_i = -b_f`` (as ``LSTMCell``).
    ``ln_eps`` is ε. ``recur_scan`` runs :mod:`lstmjax.fast.ln_lstm`.
    """

    forget_bias: float | None = None
    chrono: float | None = None
    ln_eps: float = 1e-5

    def _validate(self):
        self._check_ln_options()
        if not self.use_bias and self.forget_bias is not None:
            raise ValueError("forget_bias sets a bias: it needs use_bias=True")
        if self.forget_bias is not None and self.chrono is not None:
            raise ValueError("give either forget_bias or chrono, not both")

    @property
    def num_gates(self) -> int:
        return 4

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_w, k_b, k_c = jax.random.split(key, 3)
        params = self._ln_params(k_w, input_size)
        params["alpha_c"] = jnp.ones((H,), self.param_dtype)
        if self.use_bias:
            b = self._bias(k_b, 4 * H)
            if self.forget_bias is not None:
                b = b.at[H : 2 * H].set(self.forget_bias)
            if self.chrono is not None:
                b_f = _init.chrono_bias(k_c, H, self.chrono, b.dtype)
                b = b.at[H : 2 * H].set(b_f).at[:H].set(-b_f)
            params["b"] = b
            params["beta_c"] = jnp.zeros((H,), self.param_dtype)
        return params

    def initial_carry(self, params, batch_shape=()):
        z = jnp.zeros((*tuple(batch_shape), self.hidden_size), self.param_dtype)
        return (z, z)

    def recur(self, params, carry, xp):
        self._check_recur(params, xp)
        new_carry, h_new, _ = self._recur_gates(params, carry, xp)
        return new_carry, h_new

    def gate_activations(self, params, carry, xp):
        """``{"i": i, "f": f, "o": o}``, each ``[*B, H]``."""
        return self._recur_gates(params, carry, xp)[2]

    @property
    def keep_gate(self):
        """``"f"``: ``c' = f ⊙ c + i ⊙ g``."""
        return "f"

    def _recur_gates(self, params, carry, xp):
        """``recur``'s ``(carry, y)`` and its gates."""
        h, c = carry
        H = self.hidden_size
        z = xp + layer_norm(h @ params["W_h"], params["alpha_h"], eps=self.ln_eps)
        i = jax.nn.sigmoid(z[..., :H])
        f = jax.nn.sigmoid(z[..., H : 2 * H])
        g = jnp.tanh(z[..., 2 * H : 3 * H])
        o = jax.nn.sigmoid(z[..., 3 * H :])
        c_new = f * c + i * g
        h_new = o * jnp.tanh(layer_norm(c_new, params["alpha_c"], params.get("beta_c"),
                                        self.ln_eps))
        return (h_new, c_new), h_new, {"i": i, "f": f, "o": o}

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan`` through :mod:`lstmjax.fast.ln_lstm` when it applies."""
        kw = {"unroll": unroll, "return_carries": return_carries,
              "reset_carry": self._loop_carry(params, reset_carry, xp_T)}
        carry = self._loop_carry(params, carry, xp_T)
        if _fast.applies(self, LNLSTMCell, params, carry, xp_T):
            return _fast.recur_scan(self, params, carry, xp_T, valid_T, reset_T, **kw)
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, **kw)


@dataclasses.dataclass(frozen=True)
class LNGRUCell(_LNCell):
    r"""Layer-normalised GRU (Ba et al. 2016's treatment, applied to the PyTorch GRU form),
    gates r, z, n::

        xp = LN(x W_x; α_x) + b ;  hh = LN(h W_h; α_h)    (each joint over the 3H gates)
        r  = σ(xp_r + hh_r) ;  z = σ(xp_z + hh_z)
        n  = tanh(xp_n + r ⊙ (hh_n + b_hn))
        h' = (1 - z) ⊙ n + z ⊙ h

    The input and recurrent pre-activations are normalised separately, so the reset gate
    scales the normalised ``hh_n`` (the reset-after form: ``(r ⊙ h) W_h`` would need a
    second, r-dependent normalisation). ``b_hn`` is ``LN(h W_h)``'s shift of the n block;
    the r and z shifts are folded into ``b``. Params: ``W_x [D, 3H]``, ``W_h [H, 3H]``,
    ``alpha_x, alpha_h [3H]`` (init 1), ``b [3H]``, ``b_hn [H]`` (absent with
    ``use_bias=False``). Carry ``h``. ``chrono`` = T_max sets ``b_z ~ log U[1, T_max-1]``.
    """

    chrono: float | None = None
    ln_eps: float = 1e-5

    def _validate(self):
        self._check_ln_options()

    @property
    def num_gates(self) -> int:
        return 3

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_w, k_b, k_bn, k_c = jax.random.split(key, 4)
        params = self._ln_params(k_w, input_size)
        if self.use_bias:
            b = self._bias(k_b, 3 * H)
            b = b.at[2 * H :].set(self._bias(k_bn, H, n_sum=1))
            if self.chrono is not None:
                b = b.at[H : 2 * H].set(_init.chrono_bias(k_c, H, self.chrono, b.dtype))
            params["b"] = b
            params["b_hn"] = self._bias(jax.random.fold_in(k_bn, 1), H, n_sum=1)
        return params

    def recur(self, params, h, xp):
        self._check_recur(params, xp)
        h_new, _ = self._recur_gates(params, h, xp)
        return h_new, h_new

    def gate_activations(self, params, carry, xp):
        """``{"r": r, "z": z}``, each ``[*B, H]``."""
        return self._recur_gates(params, carry, xp)[1]

    @property
    def keep_gate(self):
        """``"z"``: ``h' = (1 - z) ⊙ n + z ⊙ h``."""
        return "z"

    def _recur_gates(self, params, h, xp):
        """``(h', {"r": r, "z": z})``."""
        H = self.hidden_size
        hh = layer_norm(h @ params["W_h"], params["alpha_h"], eps=self.ln_eps)
        r = jax.nn.sigmoid(xp[..., :H] + hh[..., :H])
        z = jax.nn.sigmoid(xp[..., H : 2 * H] + hh[..., H : 2 * H])
        hn = hh[..., 2 * H :]
        if "b_hn" in params:
            hn = hn + params["b_hn"]
        n = jnp.tanh(xp[..., 2 * H :] + r * hn)
        h_new = (1.0 - z) * n + z * h
        return h_new, {"r": r, "z": z}
