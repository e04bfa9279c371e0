"""Fast ``recur_scan`` for the IndRNN (custom VJP; see :mod:`lstmjax.fast`).

Forward ``h' = act(xp + u ⊙ h)`` saving ``h'``; backward ``dpre = (dh' + dy) ⊙ act'(h')``,
``dh_prev = dpre ⊙ u`` (no matmul: the recurrence is diagonal); after the loop
``du = Σ_t dpre_t ⊙ h_{t-1}``. Fast: every ``activation``.
"""

from __future__ import annotations

import dataclasses

from lstmjax.fast import _act, covers, run_kernel
from lstmjax.fast._engine import rows_sum


@dataclasses.dataclass(frozen=True)
class IndRNNKernel:
    act: str
    y_leaf = 0

    def bwd_consts(self, P):
        return P

    def fwd_step(self, P, h, xp):
        h_new = _act.apply(self.act, xp + P["u"] * h)
        return h_new, h_new, h_new

    def bwd_step(self, P, h, h_new, dh_new, dy):
        dpre = _act.mul_deriv(self.act, dh_new + dy, h_new)
        return dpre * P["u"], dpre

    def param_grads(self, P, h_in, carries, res_T, dpre_T):
        return {"u": rows_sum(dpre_T * h_in)}


def applies(cell, family: type, params, carry, xp_T) -> bool:
    """Whether the fast path covers this call of ``cell``, an instance of the IndRNN class
    ``family`` (else ``Cell.reference_recur_scan`` runs)."""
    return covers(cell, family, params, carry, xp_T, keys=("u",))


def recur_scan(cell, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """``Cell.recur_scan`` for an IndRNN through the custom-VJP loop (check :func:`applies`)."""
    return run_kernel(IndRNNKernel(cell.activation), {"u": params["u"]}, carry, xp_T, valid_T,
                      reset_T, unroll=unroll, return_carries=return_carries,
                      reset_carry=reset_carry)
