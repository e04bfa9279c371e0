"""Fast ``recur_scan`` for the layer-normalised LSTM (custom VJP; see :mod:`lstmjax.fast`).

With ``LN`` over the last axis, ``n = (a - mean a) * r``, ``r = (var a + eps)^-1/2``;
forward, per step (``xp = LN(x W_x; α_x) + b`` was hoisted by ``project``)::

    hh = h @ W_h ;  n_h, r_h = LN stats of hh ;  z = xp + α_h*n_h
    i, f, g, o = σ, σ, tanh, σ of z's blocks             one tanh pass
    c' = f*c + i*g ;  n_c, r_c = LN stats of c' ;  tc = tanh(α_c*n_c + β_c) ;  h' = o*tc

saving ``i, f, g, o, tc`` per gate and ``n_h, r_h, n_c, r_c``. Backward, per step, with no
transcendental (``LN'(d) = r*(d - mean d - n*mean(d*n))``, the transpose of normalising)::

    dh = dh' + dy ;  dz_o = dh*tc*σ'(o) ;  dl = dh*o*(1 - tc²)
    dc = dc' + LN'_c(dl*α_c) ;  dz_i = dc*g*σ'(i) ;  dz_f = dc*c*σ'(f) ;  dz_g = dc*i*(1 - g²)
    dc_prev = dc*f ;  dhh = LN'_h(dz*α_h) ;  dh_prev = dhh @ W_hᵀ

emitting ``dxp = dz`` and the extras ``(dhh, dl)``; after the loop, single reductions over
all ``T*B`` rows: ``dW_h = Σ h_{t-1}ᵀ dhh``, ``dα_h = Σ dz*n_h``, ``dα_c = Σ dl*n_c``,
``dβ_c = Σ dl``. Covers every ``LNLSTMCell`` configuration.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lstmjax.fast import _act, covers, run_kernel
from lstmjax.fast._engine import rows_matmul, rows_sum

GATES = ("i", "f", "g", "o")
KINDS = ("sigmoid", "sigmoid", "tanh", "sigmoid")


def _normalise(a, eps):
    """``(n, r)``: ``n = (a - mean a) * r`` and ``r = (var a + eps)^-1/2`` over the last axis."""
    d = a - jnp.mean(a, axis=-1, keepdims=True)
    r = jax.lax.rsqrt(jnp.mean(d * d, axis=-1, keepdims=True) + eps)
    return d * r, r


def _normalise_transpose(dn, n, r):
    """The cotangent of ``a`` from that of ``n`` (``n, r`` from :func:`_normalise`)."""
    mean = lambda v: jnp.mean(v, axis=-1, keepdims=True)  # noqa: E731
    return r * (dn - mean(dn) - n * mean(dn * n))


@dataclasses.dataclass(frozen=True)
class LNLSTMKernel:
    H: int
    eps: float
    has_beta_c: bool
    y_leaf = 0  # carry (h, c): y is h

    @property
    def keys(self) -> tuple[str, ...]:
        return ("W_h", "alpha_h", "alpha_c") + (("beta_c",) if self.has_beta_c else ())

    def bwd_consts(self, P):
        return {**P, "W_hT": P["W_h"].T}

    def fwd_step(self, P, carry, xp):
        h, c = carry
        n_h, r_h = _normalise(h @ P["W_h"], self.eps)
        a = _act.block_act(KINDS, self.H, xp + P["alpha_h"] * n_h)
        # Residuals are saved per gate (rule 2 in lstmjax.fast).
        res = {g: a[..., k * self.H : (k + 1) * self.H] for k, g in enumerate(GATES)}
        c_new = res["f"] * c + res["i"] * res["g"]
        n_c, r_c = _normalise(c_new, self.eps)
        lc = P["alpha_c"] * n_c
        if self.has_beta_c:
            lc = lc + P["beta_c"]
        res.update(tc=jnp.tanh(lc), n_h=n_h, r_h=r_h, n_c=n_c, r_c=r_c)
        h_new = res["o"] * res["tc"]
        return (h_new, c_new), h_new, res

    def bwd_step(self, P, carry, res, dcarry, dy):
        h, c = carry
        dh_new, dc_new = dcarry
        i, f, g, o, tc = (res[k] for k in ("i", "f", "g", "o", "tc"))
        dh = dh_new + dy
        dz_o = _act.mul_deriv("sigmoid", dh * tc, o)
        dl = _act.mul_deriv("tanh", dh * o, tc)
        dc = dc_new + _normalise_transpose(dl * P["alpha_c"], res["n_c"], res["r_c"])
        dz_i = _act.mul_deriv("sigmoid", dc * g, i)
        dz_f = _act.mul_deriv("sigmoid", dc * c, f)
        dz_g = _act.mul_deriv("tanh", dc * i, g)
        dz = jnp.concatenate([dz_i, dz_f, dz_g, dz_o], axis=-1)
        dhh = _normalise_transpose(dz * P["alpha_h"], res["n_h"], res["r_h"])
        return (dhh @ P["W_hT"], dc * f), dz, (dhh, dl)

    def param_grads(self, P, carry_in_T, carries_T, res_T, dz_T, aux_T):
        dhh_T, dl_T = aux_T
        dP = {
            "W_h": rows_matmul(carry_in_T[0], dhh_T).astype(P["W_h"].dtype),
            "alpha_h": rows_sum(dz_T * res_T["n_h"]),
            "alpha_c": rows_sum(dl_T * res_T["n_c"]),
        }
        if self.has_beta_c:
            dP["beta_c"] = rows_sum(dl_T)
        return dP


def applies(cell, family: type, params, carry, xp_T) -> bool:
    """Whether the fast path covers this call of ``cell``, an instance of the LN-LSTM class
    ``family`` (else ``Cell.reference_recur_scan`` runs)."""
    keys = ("W_h", "alpha_h", "alpha_c") + (("beta_c",) if "beta_c" in params else ())
    return covers(cell, family, params, carry, xp_T, keys=keys)


def recur_scan(cell, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """``Cell.recur_scan`` for an LN-LSTM through the custom-VJP loop (check :func:`applies`)."""
    kernel = LNLSTMKernel(cell.hidden_size, float(cell.ln_eps), "beta_c" in params)
    P = {k: params[k] for k in kernel.keys}
    reset_carry = None if reset_carry is None else tuple(reset_carry)
    return run_kernel(kernel, P, tuple(carry), xp_T, valid_T, reset_T, unroll=unroll,
                      return_carries=return_carries, reset_carry=reset_carry)
