"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network")."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lstmjax.activations import ACTIVATIONS
from lstmjax.cells._base import Cell, choose
from lstmjax.fast import indrnn as _fast


@dataclasses.dataclass(frozen=True)
class IndRNNCell(Cell):
    r"""IndRNN: every unit recurs only on itself, through one weight ``u_k``::

        h' = act(x W_x + u ⊙ h + b)                 act = relu (the paper's), or any activation

    Constraint (Li et al. 2018, Sec. 3.1): ``|u| <= recurrent_max`` keeps the gradient over
    ``T`` steps within ``recurrent_max^T``; ``t_max = T`` sets ``recurrent_max = 2^{1/T}`` (the
    authors' ``U_bound`` with MAG = 2). It holds at init and, through :meth:`constrain`
    (``u ← clip(u, -recurrent_max, recurrent_max)``), after every training update.

    Init (the authors' adding-problem code): ``u ~ U(0, recurrent_max)``, or ``U(0, 1)``
    without a bound; ``W_x`` by ``kernel_init`` and ``b`` by ``bias_init`` (the registered
    ``indrnn`` presets ``W_x ~ N(0, 1e-3²)`` and ``b = 0``, as the paper). ``recurrent_init``
    does not apply (``u`` is a vector). Params: ``W_x [D, H]``, ``u [H]``, ``b [H]``. Carry
    ``h [*B, H]``; ``y = h'``. ``recur_scan`` runs :mod:`lstmjax.fast.indrnn`.
    """

    recurrent_weight = "u"

    activation: str = "relu"
    recurrent_max: float | None = None
    t_max: float | None = None

    def _validate(self):
        choose("activation", self.activation, ACTIVATIONS)
        if self.recurrent_init != "torch_uniform":
            raise ValueError(
                f"recurrent_init={self.recurrent_init!r}: IndRNN's recurrent weight u is a "
                f"vector initialised U(0, recurrent_max) (Li et al. 2018); leave it out"
            )
        if self.recurrent_max is not None and self.t_max is not None:
            raise ValueError("give either recurrent_max or t_max (recurrent_max = 2^(1/t_max))")
        if self.recurrent_max is not None and not self.recurrent_max > 0:
            raise ValueError(f"recurrent_max={self.recurrent_max!r} must be > 0 (a bound on |u|)")
        if self.t_max is not None and not self.t_max >= 1:
            raise ValueError(f"t_max={self.t_max!r} must be >= 1 (the longest gap T)")

    @property
    def bound(self) -> float | None:
        """The bound on ``|u|``: ``recurrent_max``, ``2^{1/t_max}``, or None (unconstrained)."""
        if self.t_max is not None:
            return 2.0 ** (1.0 / self.t_max)
        return None if self.recurrent_max is None else float(self.recurrent_max)

    @property
    def num_gates(self) -> int:
        return 1

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_x, k_u, k_b = jax.random.split(key, 3)
        high = 1.0 if self.bound is None else self.bound
        params = {
            "W_x": self._kernel(k_x, (input_size, H), "kernel_init"),
            "u": jax.random.uniform(k_u, (H,), jnp.float32, 0.0, high).astype(self.param_dtype),
        }
        if self.use_bias:
            params["b"] = self._bias(k_b, H, n_sum=1)
        return params

    def constrain(self, params):
        """``u`` clipped to ``[-bound, bound]`` (identity without a bound)."""
        if self.bound is None:
            return params
        return {**params, "u": jnp.clip(params["u"], -self.bound, self.bound)}

    def recur(self, params, h, xp):
        self._check_recur(params, xp)
        h_new = ACTIVATIONS[self.activation](xp + params["u"] * h)
        return h_new, h_new

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan`` through :mod:`lstmjax.fast.indrnn` when it applies."""
        kw = {"unroll": unroll, "return_carries": return_carries,
              "reset_carry": self._loop_carry(params, reset_carry, xp_T)}
        carry = self._loop_carry(params, carry, xp_T)
        if _fast.applies(self, IndRNNCell, params, carry, xp_T):
            return _fast.recur_scan(self, params, carry, xp_T, valid_T, reset_T, **kw)
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, **kw)
