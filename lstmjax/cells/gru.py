"""Gated recurrent units: GRU (PyTorch/cuDNN and Cho et al. forms) and MGU."""

from __future__ import annotations

import dataclasses

import jax

from lstmjax import init as _init
from lstmjax.activations import ACTIVATIONS, GATE_FNS
from lstmjax.cells._base import Cell, choose
from lstmjax.fast import gru as _fast


@dataclasses.dataclass(frozen=True)
class GRUCell(Cell):
    r"""GRU (Cho et al. 2014), gate order (r, z, n) as in PyTorch.

    With ``xp = x @ W_x + b`` and ``hh = h @ W_h``::

        r  = gate_fn(xp_r + hh_r)
        z  = gate_fn(xp_z + hh_z)
        n  = act(xp_n + r * (hh_n + b_hn))          reset_after=True (PyTorch / cuDNN, default)
        n  = act(xp_n + (r * h) @ W_h[:, n])        reset_after=False (Cho et al. 2014)
        h' = (1 - z) * n + z * h

    Params: ``W_x [D, 3H]``, ``W_h [H, 3H]``, ``b [3H]`` (= b_ih + b_hh for r, z; b_in
    for n) and ``b_hn [H]`` (reset_after only). ``chrono`` = T_max sets
    ``b_z ~ log U[1, T_max-1]`` (z near 1 keeps the state). Carry ``h [*B, H]``.
    ``recur_scan`` runs :mod:`lstmjax.fast.gru`.
    """

    reset_after: bool = True
    chrono: float | None = None
    gate_fn: str = "sigmoid"
    activation: str = "tanh"

    def _validate(self):
        choose("gate_fn", self.gate_fn, GATE_FNS)
        choose("activation", self.activation, ACTIVATIONS)
        if self.chrono is not None and not self.use_bias:
            raise ValueError("chrono sets the update-gate bias: it needs use_bias=True")
        if self.chrono is not None and not self.chrono > 2:
            raise ValueError(f"chrono={self.chrono!r} must be a T_max > 2 (the longest gap)")

    @property
    def num_gates(self) -> int:
        return 3

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_x, k_h, k_b, k_bn, k_c = jax.random.split(key, 5)
        params = {
            "W_x": self._kernel(k_x, (input_size, 3 * H), "kernel_init"),
            "W_h": self._kernel(k_h, (H, 3 * H), "recurrent_init"),
        }
        if self.use_bias:
            b = self._bias(k_b, 3 * H)
            if self.reset_after:
                # b_in is a single torch draw; b_hn lives inside the reset product.
                b = b.at[2 * H :].set(self._bias(k_bn, H, n_sum=1))
                params["b_hn"] = self._bias(jax.random.fold_in(k_bn, 1), H, n_sum=1)
            if self.chrono is not None:
                b = b.at[H : 2 * H].set(_init.chrono_bias(k_c, H, self.chrono, b.dtype))
            params["b"] = b
        return params

    def recur(self, params, h, xp):
        self._check_recur(params, xp)
        h_new, _ = self._recur_gates(params, h, xp)
        return h_new, h_new

    def gate_activations(self, params, carry, xp):
        """``{"r": r, "z": z}`` (reset, update), each ``[*B, H]``."""
        return self._recur_gates(params, carry, xp)[1]

    @property
    def keep_gate(self):
        """``"z"``: ``h' = (1 - z) * n + z * h``."""
        return "z"

    def _recur_gates(self, params, h, xp):
        """``(h', {"r": r, "z": z})``."""
        H = self.hidden_size
        gate_fn = GATE_FNS[self.gate_fn]
        act = ACTIVATIONS[self.activation]
        W_h = params["W_h"]
        if self.reset_after:
            hh = h @ W_h
            r = gate_fn(xp[..., :H] + hh[..., :H])
            z = gate_fn(xp[..., H : 2 * H] + hh[..., H : 2 * H])
            hn = hh[..., 2 * H :]
            if "b_hn" in params:
                hn = hn + params["b_hn"]
            n = act(xp[..., 2 * H :] + r * hn)
        else:
            hh = h @ W_h[:, : 2 * H]
            r = gate_fn(xp[..., :H] + hh[..., :H])
            z = gate_fn(xp[..., H : 2 * H] + hh[..., H:])
            n = act(xp[..., 2 * H :] + (r * h) @ W_h[:, 2 * H :])
        h_new = (1.0 - z) * n + z * h
        return h_new, {"r": r, "z": z}

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan`` through :mod:`lstmjax.fast.gru` when it applies."""
        kw = {"unroll": unroll, "return_carries": return_carries,
              "reset_carry": self._loop_carry(params, reset_carry, xp_T)}
        carry = self._loop_carry(params, carry, xp_T)
        if _fast.applies(self, GRUCell, params, carry, xp_T):
            return _fast.recur_scan(self, params, carry, xp_T, valid_T, reset_T, **kw)
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, **kw)


@dataclasses.dataclass(frozen=True)
class MGUCell(Cell):
    r"""Minimal gated unit (Zhou et al. 2016): one gate f does the GRU's two jobs.

    ``form="paper"`` (default, Zhou et al. eq. 7–9)::

        f  = gate_fn(xp_f + h @ W_h[:, f])
        n  = act(xp_n + (f * h) @ W_h[:, n])
        h' = (1 - f) * h + f * n

    ``form="flax"`` (``flax.linen.MGUCell``; reset after the matmul, f keeps the state)::

        f  = gate_fn(xp_f + h @ W_h[:, f])
        n  = act(xp_n + f * (h @ W_h[:, n] + b_hn))
        h' = (1 - f) * n + f * h

    Params: ``W_x [D, 2H]``, ``W_h [H, 2H]``, ``b [2H]`` (+ ``b_hn [H]`` in the flax
    form). Carry ``h [*B, H]``.
    """

    form: str = "paper"
    gate_fn: str = "sigmoid"
    activation: str = "tanh"

    def _validate(self):
        choose("form", self.form, {"paper": 0, "flax": 1})
        choose("gate_fn", self.gate_fn, GATE_FNS)
        choose("activation", self.activation, ACTIVATIONS)

    @property
    def num_gates(self) -> int:
        return 2

    def init(self, key, input_size):
        self._check_input_size(input_size)
        H = self.hidden_size
        k_x, k_h, k_b, k_bn = jax.random.split(key, 4)
        params = {
            "W_x": self._kernel(k_x, (input_size, 2 * H), "kernel_init"),
            "W_h": self._kernel(k_h, (H, 2 * H), "recurrent_init"),
        }
        if self.use_bias:
            params["b"] = self._bias(k_b, 2 * H)
            if self.form == "flax":
                params["b_hn"] = self._bias(k_bn, H, n_sum=1)
        return params

    def recur(self, params, h, xp):
        self._check_recur(params, xp)
        h_new, _ = self._recur_gates(params, h, xp)
        return h_new, h_new

    def gate_activations(self, params, carry, xp):
        """``{"f": f}``, ``[*B, H]``."""
        return self._recur_gates(params, carry, xp)[1]

    @property
    def keep_gate(self):
        """``"1-f"`` in the paper form (``h' = (1 - f) * h + f * n``), ``"f"`` in flax's."""
        return "1-f" if self.form == "paper" else "f"

    def _recur_gates(self, params, h, xp):
        """``(h', {"f": f})``."""
        H = self.hidden_size
        gate_fn = GATE_FNS[self.gate_fn]
        act = ACTIVATIONS[self.activation]
        W_h = params["W_h"]
        if self.form == "paper":
            f = gate_fn(xp[..., :H] + h @ W_h[:, :H])
            n = act(xp[..., H:] + (f * h) @ W_h[:, H:])
            h_new = (1.0 - f) * h + f * n
        else:
            hh = h @ W_h
            f = gate_fn(xp[..., :H] + hh[..., :H])
            hn = hh[..., H:]
            if "b_hn" in params:
                hn = hn + params["b_hn"]
            n = act(xp[..., H:] + f * hn)
            h_new = (1.0 - f) * n + f * h
        return h_new, {"f": f}
