"""Fast ``recur_scan`` for the GRU (custom VJP; see :mod:`lstmjax.fast`).

``reset_after=True`` (PyTorch/cuDNN), per step with ``hn = h @ W_n + b_hn``::

    r = σ(xp_r + h @ W_r) ;  z = σ(xp_z + h @ W_z) ;  n = act(xp_n + r*hn) ;  h' = n + z*(h - n)

saving ``r, z, n, hn``. Backward (no transcendental)::

    dh = dh' + dy ;  dn = act'(n)*dh*(1-z) ;  dr = σ'(r)*dn*hn ;  dz = σ'(z)*dh*(h-n)
    dh_prev = dh*z + [dr, dz, dn*r] @ W_hᵀ

then ``dW_h = Σ_t h_{t-1}ᵀ [dr, dz, dn*r]_t`` and ``db_hn = Σ dn*r`` after the loop.
``reset_after=False`` (Cho et al. 2014) has ``n = act(xp_n + (r*h) @ W_n)``, a second
dependent matmul each way, and ``dW_n = Σ (r*h)ᵀ dn``. The gate weights are split per
gate (``W_r, W_z, W_n``) and so is ``xp`` (``prepare``): no step slices a fused array.

Fast: both forms, any ``gate_fn``/``activation``, with or without bias.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from lstmjax.fast import _act, covers, run_kernel
from lstmjax.fast._engine import rows_matmul, rows_sum


@dataclasses.dataclass(frozen=True)
class GRUKernel:
    H: int
    reset_after: bool
    gate_fn: str
    act: str
    has_b_hn: bool
    y_leaf = 0

    def recurrent_params(self, params):
        """Per-gate ``W_r, W_z, W_n [H, H]`` (and ``b_hn``): each step's matmuls then
        produce whole arrays, never column slices (rule 2 in :mod:`lstmjax.fast`)."""
        H, W_h = self.H, params["W_h"]
        P = {"W_r": W_h[:, :H], "W_z": W_h[:, H : 2 * H], "W_n": W_h[:, 2 * H :]}
        if self.has_b_hn:
            P["b_hn"] = params["b_hn"]
        return P

    def bwd_consts(self, P):
        Q = dict(P)
        if self.reset_after:
            Q["W_hT"] = jnp.concatenate([P["W_r"], P["W_z"], P["W_n"]], axis=1).T
        else:
            Q["W_rzT"] = jnp.concatenate([P["W_r"], P["W_z"]], axis=1).T
            Q["W_nT"] = P["W_n"].T
        return Q

    def prepare(self, xp_T):
        """``(xp_r, xp_z, xp_n)``: split once, so no step slices its input."""
        H = self.H
        return xp_T[..., :H], xp_T[..., H : 2 * H], xp_T[..., 2 * H :]

    def fwd_step(self, P, h, xp):
        xp_r, xp_z, xp_n = xp
        r = _act.apply(self.gate_fn, xp_r + h @ P["W_r"])
        z = _act.apply(self.gate_fn, xp_z + h @ P["W_z"])
        if self.reset_after:
            hn = h @ P["W_n"]
            if self.has_b_hn:
                hn = hn + P["b_hn"]
            n = _act.apply(self.act, xp_n + r * hn)
            res = {"r": r, "z": z, "n": n, "hn": hn}
        else:
            n = _act.apply(self.act, xp_n + (r * h) @ P["W_n"])
            res = {"r": r, "z": z, "n": n}
        h_new = n + z * (h - n)
        return h_new, h_new, res

    def bwd_step(self, P, h, res, dh_new, dy):
        dh = dh_new + dy
        r, z, n = res["r"], res["z"], res["n"]
        dpre_n = _act.mul_deriv(self.act, dh * (1.0 - z), n)
        dpre_z = _act.mul_deriv(self.gate_fn, dh * (h - n), z)
        dh_prev = dh * z
        if self.reset_after:
            dpre_r = _act.mul_deriv(self.gate_fn, dpre_n * res["hn"], r)
            dhh = jnp.concatenate([dpre_r, dpre_z, dpre_n * r], -1)
            dh_prev = dh_prev + dhh @ P["W_hT"]
        else:
            drh = dpre_n @ P["W_nT"]
            dpre_r = _act.mul_deriv(self.gate_fn, drh * h, r)
            drz = jnp.concatenate([dpre_r, dpre_z], -1)
            dh_prev = dh_prev + drh * r + drz @ P["W_rzT"]
        return dh_prev, jnp.concatenate([dpre_r, dpre_z, dpre_n], -1)

    def param_grads(self, P, h_in, carries, res_T, dxp_T):
        H, H2 = self.H, 2 * self.H
        dpre_n = dxp_T[..., H2:]
        dP = {}
        if self.reset_after:
            dhn = dpre_n * res_T["r"]
            dW = rows_matmul(h_in, jnp.concatenate([dxp_T[..., :H2], dhn], -1))
            dP["W_n"] = dW[:, H2:]
            if self.has_b_hn:
                dP["b_hn"] = rows_sum(dhn)
        else:
            dW = rows_matmul(h_in, dxp_T[..., :H2])
            dP["W_n"] = rows_matmul(res_T["r"] * h_in, dpre_n)
        dP["W_r"], dP["W_z"] = dW[:, :H], dW[:, H:H2]
        return dP


def applies(cell, family: type, params, carry, xp_T) -> bool:
    """Whether the fast path covers this call of ``cell``, an instance of the GRU class
    ``family`` (else ``Cell.reference_recur_scan`` runs)."""
    return covers(cell, family, params, carry, xp_T)


def recur_scan(cell, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """``Cell.recur_scan`` for a GRU through the custom-VJP loop (check :func:`applies`)."""
    kernel = GRUKernel(cell.hidden_size, cell.reset_after, cell.gate_fn, cell.activation,
                       "b_hn" in params)
    return run_kernel(kernel, kernel.recurrent_params(params), carry, xp_T, valid_T, reset_T,
                      unroll=unroll, return_carries=return_carries, reset_carry=reset_carry)
