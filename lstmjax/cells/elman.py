"""Elman RNN and IRNN."""

from __future__ import annotations

import dataclasses

import jax

from lstmjax.activations import ACTIVATIONS
from lstmjax.cells._base import Cell, choose
from lstmjax.fast import elman as _fast


@dataclasses.dataclass(frozen=True)
class ElmanCell(Cell):
    r"""Elman RNN: ``h' = act(x @ W_x + h @ W_h + b)``.

    ``activation`` is ``"tanh"`` (default, as ``torch.nn.RNNCell``) or ``"relu"``;
    with ``recurrent_init="identity"`` and ``relu`` this is the IRNN of Le et al.
    2015 (registered as ``irnn``). Params: ``W_x [D, H]``, ``W_h [H, H]``, ``b [H]``.
    Carry: ``h [*B, H]``; output ``y = h'``. ``recur_scan`` runs :mod:`lstmjax.fast.elman`.
    """

    activation: str = "tanh"

    def _validate(self):
        choose("activation", self.activation, ACTIVATIONS)

    @property
    def num_gates(self) -> int:
        return 1

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_x, k_h, k_b = jax.random.split(key, 3)
        params = {
            "W_x": self._kernel(k_x, (input_size, H), "kernel_init"),
            "W_h": self._kernel(k_h, (H, H), "recurrent_init"),
        }
        if self.use_bias:
            params["b"] = self._bias(k_b, H)
        return params

    def recur(self, params, carry, xp):
        self._check_recur(params, xp)
        h = ACTIVATIONS[self.activation](xp + carry @ params["W_h"])
        return h, h

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan`` through :mod:`lstmjax.fast.elman` when it applies."""
        kw = {"unroll": unroll, "return_carries": return_carries,
              "reset_carry": self._loop_carry(params, reset_carry, xp_T)}
        carry = self._loop_carry(params, carry, xp_T)
        if _fast.applies(self, ElmanCell, params, carry, xp_T):
            return _fast.recur_scan(self, params, carry, xp_T, valid_T, reset_T, **kw)
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, **kw)
