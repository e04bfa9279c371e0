"""Fast ``recur_scan`` for the Elman RNN / IRNN (custom VJP; see :mod:`lstmjax.fast`).

Forward ``h' = act(xp + h @ W_h)`` saving ``h'``; backward
``dpre = (dh' + dy) * act'(h')``, ``dh_prev = dpre @ W_hᵀ``; after the loop
``dW_h = Σ_t h_{t-1}ᵀ dpre_t``. Fast: every ``activation``.
"""

from __future__ import annotations

import dataclasses

from lstmjax.fast import _act, covers, run_kernel
from lstmjax.fast._engine import rows_matmul


@dataclasses.dataclass(frozen=True)
class RNNKernel:
    act: str
    y_leaf = 0

    def bwd_consts(self, P):
        return {**P, "W_hT": P["W_h"].T}

    def fwd_step(self, P, h, xp):
        h_new = _act.apply(self.act, xp + h @ P["W_h"])
        return h_new, h_new, h_new

    def bwd_step(self, P, h, h_new, dh_new, dy):
        dpre = _act.mul_deriv(self.act, dh_new + dy, h_new)
        return dpre @ P["W_hT"], dpre

    def param_grads(self, P, h_in, carries, res_T, dpre_T):
        return {"W_h": rows_matmul(h_in, dpre_T)}


def applies(cell, family: type, params, carry, xp_T) -> bool:
    """Whether the fast path covers this call of ``cell``, an instance of the Elman class
    ``family`` (else ``Cell.reference_recur_scan`` runs)."""
    return covers(cell, family, params, carry, xp_T)


def recur_scan(cell, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """``Cell.recur_scan`` for an Elman RNN through the custom-VJP loop (check :func:`applies`)."""
    return run_kernel(RNNKernel(cell.activation), {"W_h": params["W_h"]}, carry, xp_T, valid_T,
                      reset_T, unroll=unroll, return_carries=return_carries,
                      reset_carry=reset_carry)
