"""The LSTM family: forget-gate LSTM, peepholes, CIFG, projection and the Greff et al. variants."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lstmjax import init as _init
from lstmjax.activations import ACTIVATIONS, GATE_FNS
from lstmjax.cells._base import Cell, check_positive_int, choose
from lstmjax.fast import lstm as _fast

SIGMOID_GATES = ("i", "f", "o")


@dataclasses.dataclass(frozen=True)
class LSTMCell(Cell):
    r"""LSTM with forget gate (Gers et al. 2000) and every Greff et al. 2017 switch.

    With ``z = x @ W_x + b + h @ W_h`` split into blocks in PyTorch order (i, f, g, o)::

        i  = gate_fn(z_i + p_i * c)            (1 if not input_gate)
        f  = gate_fn(z_f + p_f * c)            (1 - i if coupled; 1 if not forget_gate)
        g  = act(z_g)                          (z_g if not input_activation)
        c' = f * c + i * g
        o  = gate_fn(z_o + p_o * c')           (1 if not output_gate)
        h' = o * act(c')                       (o * c' if not output_activation)
        h' = h' @ W_proj                       (only if proj_size > 0, as torch's proj_size)

    ``p_k`` are diagonal peephole weights ``[H]`` for the gates named in ``peepholes``
    (Gers & Schmidhuber 2000): i and f see ``c``, o sees ``c'``. With
    ``full_gate_recurrence`` (Greff's FGR) the sigmoid gates also receive
    ``a @ W_a``, where ``a`` is the concatenation of the previous step's gate
    activations (carried as a third carry element).

    Params: ``W_x [D, G*H]``, ``W_h [R, G*H]`` (R = proj_size or H), ``b [G*H]``, and
    optionally ``p_i/p_f/p_o [H]``, ``W_proj [H, P]``, ``W_a [S*H, S*H]`` (S = number
    of sigmoid gates). Absent gates have no columns. Carry: ``(h [*B, R], c [*B, H])``,
    plus ``a [*B, S*H]`` with FGR. Output ``y = h'``.

    Init: everything U(±1/√H) (torch); ``forget_bias`` sets b_f to a constant
    (Jozefowicz et al. 2015); ``chrono`` = T_max sets b_f ~ log U[1, T_max-1] and
    b_i = -b_f (Tallec & Ollivier 2018).

    ``recur_scan`` runs :mod:`lstmjax.fast.lstm` (not with ``full_gate_recurrence`` or
    ``proj_size``).
    """

    forget_bias: float | None = None
    chrono: float | None = None
    peepholes: tuple[str, ...] = ()
    coupled: bool = False
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: bool = True
    output_activation: bool = True
    full_gate_recurrence: bool = False
    proj_size: int = 0
    gate_fn: str = "sigmoid"
    activation: str = "tanh"

    def __post_init__(self):
        if isinstance(self.peepholes, (list, str)):
            peeps = (self.peepholes,) if isinstance(self.peepholes, str) else self.peepholes
            object.__setattr__(self, "peepholes", tuple(peeps))
        super().__post_init__()

    def _validate(self):
        choose("gate_fn", self.gate_fn, GATE_FNS)
        choose("activation", self.activation, ACTIVATIONS)
        if self.proj_size:
            check_positive_int("proj_size", self.proj_size)
            if self.proj_size >= self.hidden_size:
                raise ValueError(
                    f"proj_size={self.proj_size} must be smaller than hidden_size="
                    f"{self.hidden_size} (as in torch.nn.LSTM)"
                )
        if self.coupled and not self.input_gate:
            raise ValueError("coupled=True needs the input gate (f = 1 - i); drop input_gate=False")
        if self.coupled and not self.forget_gate:
            raise ValueError(
                "coupled=True replaces the forget gate already; drop forget_gate=False"
            )
        sig = self.sigmoid_gates
        for p in self.peepholes:
            if p not in SIGMOID_GATES:
                raise ValueError(
                    f"peephole on gate {p!r}: no such gate; peepholes may name {SIGMOID_GATES}"
                )
            if p not in sig:
                raise ValueError(
                    f"peephole on gate {p!r}, but this cell has no {p!r} gate "
                    f"(its gates are {sig})"
                )
        if len(set(self.peepholes)) != len(self.peepholes):
            raise ValueError(f"peepholes={self.peepholes!r} names a gate twice")
        if self.chrono is not None:
            if not (self.input_gate and self.forget_gate) or self.coupled:
                raise ValueError("chrono init needs separate input and forget gates")
            if not self.chrono > 2:
                raise ValueError(f"chrono={self.chrono!r} must be a T_max > 2 (the longest gap)")
        if not self.use_bias and (self.forget_bias is not None or self.chrono is not None):
            raise ValueError("forget_bias and chrono set a bias: they need use_bias=True")
        if self.forget_bias is not None:
            if "f" not in sig:
                raise ValueError("forget_bias needs a separate forget gate (not NFG, not coupled)")
            if self.chrono is not None:
                raise ValueError("give either forget_bias or chrono, not both")
        if self.full_gate_recurrence and not sig:
            raise ValueError("full_gate_recurrence needs at least one gate")

    # ---- layout ------------------------------------------------------------------
    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        has = {
            "i": self.input_gate,
            "f": self.forget_gate and not self.coupled,
            "o": self.output_gate,
        }
        return tuple(g for g in SIGMOID_GATES if has[g])

    @property
    def gates(self) -> tuple[str, ...]:
        """Blocks of the fused projection, in PyTorch order (subset of i, f, g, o)."""
        sig = self.sigmoid_gates
        return tuple(g for g in ("i", "f", "g", "o") if g == "g" or g in sig)

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def _block(self, z, gate):
        H = self.hidden_size
        k = self.gates.index(gate)
        return z[..., k * H : (k + 1) * H]

    # ---- params ------------------------------------------------------------------
    def init(self, key, input_size):
        self._check_input_size(input_size)
        H, GH = self.hidden_size, self.projection_size
        R = self.output_size
        k_x, k_h, k_b, k_p, k_proj, k_a, k_c = jax.random.split(key, 7)
        params = {
            "W_x": self._kernel(k_x, (input_size, GH), "kernel_init"),
            "W_h": self._kernel(k_h, (R, GH), "recurrent_init"),
        }
        if self.use_bias:
            b = self._bias(k_b, GH)
            if self.forget_bias is not None:
                k = self.gates.index("f")
                b = b.at[k * H : (k + 1) * H].set(self.forget_bias)
            if self.chrono is not None:
                b_f = _init.chrono_bias(k_c, H, self.chrono, b.dtype)
                kf, ki = self.gates.index("f"), self.gates.index("i")
                b = b.at[kf * H : (kf + 1) * H].set(b_f).at[ki * H : (ki + 1) * H].set(-b_f)
            params["b"] = b
        for gate, k in zip(self.peepholes, jax.random.split(k_p, 3), strict=False):
            params[f"p_{gate}"] = _init.torch_uniform(k, (H,), self.param_dtype, hidden_size=H)
        if self.proj_size:
            params["W_proj"] = _init.torch_uniform(
                k_proj, (H, self.proj_size), self.param_dtype, hidden_size=H
            )
        if self.full_gate_recurrence:
            S = len(self.sigmoid_gates) * H
            params["W_a"] = _init.torch_uniform(k_a, (S, S), self.param_dtype, hidden_size=H)
        return params

    def initial_carry(self, params, batch_shape=()):
        batch_shape = tuple(batch_shape)
        dt = self.param_dtype
        h = jnp.zeros((*batch_shape, self.output_size), dt)
        c = jnp.zeros((*batch_shape, self.hidden_size), dt)
        if self.full_gate_recurrence:
            a = jnp.zeros((*batch_shape, len(self.sigmoid_gates) * self.hidden_size), dt)
            return (h, c, a)
        return (h, c)

    # ---- step --------------------------------------------------------------------
    def recur(self, params, carry, xp):
        self._check_recur(params, xp)
        new_carry, h_new, _ = self._recur_gates(params, carry, xp)
        return new_carry, h_new

    def gate_activations(self, params, carry, xp):
        """``{"i": i, "f": f, "o": o}``: the sigmoid gates this cell has (``f = 1 - i`` if
        coupled), each ``[*B, H]``."""
        return self._recur_gates(params, carry, xp)[2]

    @property
    def keep_gate(self):
        """``"f"`` (``c' = f * c + ...``); None without a forget gate (NFG: ``f = 1``)."""
        return "f" if self.coupled or "f" in self.sigmoid_gates else None

    def _recur_gates(self, params, carry, xp):
        """``recur``'s ``(carry, y)`` and the gates ``{name: [*B, H]}`` it used."""
        h, c = carry[0], carry[1]
        z = xp + h @ params["W_h"]
        sig = self.sigmoid_gates
        H = self.hidden_size
        if self.full_gate_recurrence:
            za = carry[2] @ params["W_a"]
            extra = {g: za[..., k * H : (k + 1) * H] for k, g in enumerate(sig)}
        else:
            extra = {}
        gate_fn = GATE_FNS[self.gate_fn]
        act = ACTIVATIONS[self.activation]

        def gate(name, cell_state):
            pre = self._block(z, name)
            if name in extra:
                pre = pre + extra[name]
            if name in self.peepholes:
                pre = pre + params[f"p_{name}"] * cell_state
            return gate_fn(pre)

        i = gate("i", c) if "i" in sig else None
        if self.coupled:
            f = 1.0 - i
        elif "f" in sig:
            f = gate("f", c)
        else:
            f = None
        g = self._block(z, "g")
        if self.input_activation:
            g = act(g)
        c_new = (c if f is None else f * c) + (g if i is None else i * g)
        o = gate("o", c_new) if "o" in sig else None
        out = act(c_new) if self.output_activation else c_new
        h_new = out if o is None else o * out
        if self.proj_size:
            h_new = h_new @ params["W_proj"]
        gates = {k: v for k, v in (("i", i), ("f", f), ("o", o)) if v is not None}
        if self.full_gate_recurrence:
            acts = {"i": i, "f": f, "o": o}
            a_new = jnp.concatenate([acts[name] for name in sig], axis=-1)
            return (h_new, c_new, a_new), h_new, gates
        return (h_new, c_new), h_new, gates

    def recur_scan(self, params, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
                   return_carries=False, reset_carry=None):
        """``Cell.recur_scan`` through :mod:`lstmjax.fast.lstm` when it applies."""
        kw = {"unroll": unroll, "return_carries": return_carries,
              "reset_carry": self._loop_carry(params, reset_carry, xp_T)}
        carry = self._loop_carry(params, carry, xp_T)
        if _fast.applies(self, LSTMCell, params, carry, xp_T):
            return _fast.recur_scan(self, params, carry, xp_T, valid_T, reset_T, **kw)
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, **kw)
