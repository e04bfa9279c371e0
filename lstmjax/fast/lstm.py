"""Fast ``recur_scan`` for the LSTM family (custom VJP; see :mod:`lstmjax.fast`).

Forward, per step (``z = xp + h @ W_h``, gate blocks in the cell's order)::

    a  = block activations of z (+ p_i*c, p_f*c peepholes)   one tanh pass if σ/tanh
    c' = f*c + i*g ;  o = σ(z_o + p_o*c') if peephole o ;  tc = act(c') ;  h' = o*tc

saving ``i, f, g, o, tc`` as separate ``[T, *B, H]`` arrays, not one ``[T, *B, G*H]``
stack (rule 2 in :mod:`lstmjax.fast`).
Backward, per step, with no transcendental::

    dh   = dh' + dy
    dz_o = dh*tc*σ'(o) ;  dc = dc' + dh*o*act'(tc) + p_o*dz_o
    dz_i = dc*g*σ'(i) ;  dz_f = dc*c*σ'(f) ;  dz_g = dc*i*act'(g)
    dc_prev = dc*f + p_i*dz_i + p_f*dz_f ;   dh_prev = dz @ W_hᵀ

and after the loop ``dW_h = Σ_t h_{t-1}ᵀ dz_t`` (one matmul), ``dp_i = Σ dz_i*c``,
``dp_f = Σ dz_f*c``, ``dp_o = Σ dz_o*c'``; ``dxp = dz`` flows into ``project``.

Fast: every gate subset (``input_gate``/``forget_gate``/``output_gate``), ``coupled``,
``peepholes``, any ``gate_fn``/``activation``, ``input_activation``/``output_activation``.
Falls back to the reference loop: ``full_gate_recurrence``, ``proj_size``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from lstmjax.fast import _act, covers, run_kernel
from lstmjax.fast._engine import rows_matmul, rows_sum


@dataclasses.dataclass(frozen=True)
class LSTMKernel:
    H: int
    gates: tuple[str, ...]
    coupled: bool
    peepholes: tuple[str, ...]
    gate_fn: str
    act: str
    input_activation: bool
    output_activation: bool
    y_leaf = 0  # carry (h, c): y is h

    @classmethod
    def of(cls, cell) -> LSTMKernel:
        return cls(
            cell.hidden_size, cell.gates, cell.coupled, tuple(cell.peepholes), cell.gate_fn,
            cell.activation, cell.input_activation, cell.output_activation,
        )

    def recurrent_params(self, params):
        return {k: params[k] for k in ("W_h", *(f"p_{g}" for g in self.peepholes))}

    @property
    def kinds(self) -> tuple[str, ...]:
        g_kind = self.act if self.input_activation else "identity"
        return tuple(g_kind if g == "g" else self.gate_fn for g in self.gates)

    def _blk(self, a, name):
        k = self.gates.index(name)
        return a[..., k * self.H : (k + 1) * self.H]

    def bwd_consts(self, P):
        return {**P, "W_hT": P["W_h"].T}

    def fwd_step(self, P, carry, xp):
        h, c = carry
        z = xp + h @ P["W_h"]
        pre = z
        for name in ("i", "f"):
            if name in self.peepholes:
                k = self.gates.index(name)
                pre = pre.at[..., k * self.H : (k + 1) * self.H].add(P[f"p_{name}"] * c)
        a = _act.block_act(self.kinds, self.H, pre)
        # Residuals are saved per gate (rule 2 in lstmjax.fast).
        res = {name: self._blk(a, name) for name in self.gates}
        i, g = res.get("i"), res["g"]
        f = 1.0 - i if self.coupled else res.get("f")
        c_new = (c if f is None else f * c) + (g if i is None else i * g)
        if "o" in self.peepholes:
            res["o"] = _act.apply(self.gate_fn, self._blk(z, "o") + P["p_o"] * c_new)
        o = res.get("o")
        tc = _act.apply(self.act, c_new) if self.output_activation else c_new
        res["tc"] = tc
        h_new = tc if o is None else o * tc
        return (h_new, c_new), h_new, res

    def bwd_step(self, P, carry, res, dcarry, dy):
        h, c = carry
        dh_new, dc_new = dcarry
        dh = dh_new + dy
        i, g, o, tc = res.get("i"), res["g"], res.get("o"), res["tc"]
        f = 1.0 - i if self.coupled else res.get("f")
        dtc = dh if o is None else dh * o
        dc = dc_new + (_act.mul_deriv(self.act, dtc, tc) if self.output_activation else dtc)
        dz = {}
        if o is not None:
            dz["o"] = _act.mul_deriv(self.gate_fn, dh * tc, o)
            if "o" in self.peepholes:
                dc = dc + P["p_o"] * dz["o"]
        if i is not None:
            dz["i"] = _act.mul_deriv(self.gate_fn, dc * (g - c) if self.coupled else dc * g, i)
        if "f" in res:
            dz["f"] = _act.mul_deriv(self.gate_fn, dc * c, f)
        dz["g"] = _act.mul_deriv(self.kinds[self.gates.index("g")], dc if i is None else dc * i, g)
        dc_prev = dc if f is None else dc * f
        for name in ("i", "f"):
            if name in self.peepholes:
                dc_prev = dc_prev + P[f"p_{name}"] * dz[name]
        dz = jnp.concatenate([dz[name] for name in self.gates], axis=-1)
        return (dz @ P["W_hT"], dc_prev), dz

    def param_grads(self, P, carry_in_T, carries_T, res_T, dz_T):
        h_in, c_in = carry_in_T
        dP = {"W_h": rows_matmul(h_in, dz_T).astype(P["W_h"].dtype)}
        for name in self.peepholes:
            state = carries_T[1] if name == "o" else c_in
            dP[f"p_{name}"] = rows_sum(self._blk(dz_T, name) * state)
        return dP


def applies(cell, family: type, params, carry, xp_T) -> bool:
    """Whether the fast path covers this call of ``cell``, an instance of the LSTM class
    ``family`` (else ``Cell.reference_recur_scan`` runs)."""
    if cell.full_gate_recurrence or cell.proj_size:
        return False
    return covers(cell, family, params, carry, xp_T)


def recur_scan(cell, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """``Cell.recur_scan`` for an LSTM through the custom-VJP loop (check :func:`applies`)."""
    kernel = LSTMKernel.of(cell)
    reset_carry = None if reset_carry is None else tuple(reset_carry)
    return run_kernel(kernel, kernel.recurrent_params(params), tuple(carry), xp_T, valid_T,
                      reset_T, unroll=unroll, return_carries=return_carries,
                      reset_carry=reset_carry)
