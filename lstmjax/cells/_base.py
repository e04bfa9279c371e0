"""The cell protocol shared by every recurrent cell.

A cell is a frozen dataclass of static hyperparameters (hashable, so it can be
a static argument of ``jax.jit``) whose methods are pure functions of plain
pytrees. The step is split so a scan can hoist the input matmul::

    xp = cell.project(params, x)    # [*batch, D] -> [*batch, P]; whole sequences at once
    carry, y = cell.recur(params, carry, xp)  # only the recurrent part stays in the loop
    carry, y = cell.step(params, carry, x)    # == recur(params, carry, project(params, x))

``P = cell.projection_size`` (``G*H`` for a cell of ``G`` fused gate blocks).
``recur_scan`` is the time-major inner loop used by :func:`lstmjax.scan`; here it is
:meth:`Cell.reference_recur_scan` (``lax.scan`` over ``recur``, plain autodiff), and the
LSTM, LN-LSTM, GRU, Elman and IndRNN classes override it to run their :mod:`lstmjax.fast`
custom-VJP loop (identical semantics) when it covers the call.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lstmjax import init as _init
from lstmjax.activations import ACTIVATIONS, GATE_FNS

__all__ = [
    "ACTIVATIONS", "GATE_FNS", "DTYPES", "Cell", "choose", "check_positive_int",
    "check_option_type", "check_params", "tree_where",
]  # fmt: skip

Params = dict[str, Any]
Carry = Any

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def choose(kind: str, value, table: dict):
    """``table[value]`` or a one-line error naming the option, the value and the choices."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{kind}={value!r} is not valid; choose one of {sorted(table)}") from None


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_option_type(cls_name: str, field: dataclasses.Field, value) -> None:
    """Reject an option whose type differs from its default's (e.g. ``coupled="yes"``).

    The default decides: bool -> bool, int -> int, float -> real number, str -> str,
    tuple -> tuple, None -> a real number or None (the optional numeric options).
    """
    default = field.default
    if default is dataclasses.MISSING:
        return
    checks = [
        (bool, lambda v: isinstance(v, bool), "true or false"),
        (int, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        (float, _is_real, "a number"),
        (str, lambda v: isinstance(v, str), "a string"),
        (tuple, lambda v: isinstance(v, tuple), "a tuple"),
        (type(None), lambda v: v is None or _is_real(v), "a number or None"),
    ]
    for kind, ok, expected in checks:
        if isinstance(default, kind):
            if not ok(value):
                raise ValueError(
                    f"{cls_name}: option {field.name}={value!r} must be {expected}"
                )
            return


def tree_where(cond_B, new, old):
    """Per-example select of two carries: ``cond_B`` has the batch shape, leaves ``[*B, X]``."""
    return jax.tree.map(lambda a, b: jnp.where(cond_B[..., None], a, b), new, old)


def cell_repr(cell) -> str:
    """``LSTMCell(hidden_size=8, proj_size=3)``: the class and its non-default fields."""
    shown = [f"hidden_size={cell.hidden_size}"] + [
        f"{f.name}={getattr(cell, f.name)!r}"
        for f in dataclasses.fields(cell)
        if f.name != "hidden_size" and f.default is not dataclasses.MISSING
        and getattr(cell, f.name) != f.default
    ]
    return f"{type(cell).__name__}({', '.join(shown)})"


@functools.lru_cache(maxsize=256)
def _expected_shapes(cell, input_size: int) -> dict:
    """``{key: shape}`` of ``cell.init(key, input_size)``, traced abstractly (no FLOPs)."""
    tree = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in tree.items()}


def _expected(cell, input_size: int) -> dict:
    try:
        return _expected_shapes(cell, input_size)
    except TypeError:  # an unhashable (user-defined) cell: no cache
        return _expected_shapes.__wrapped__(cell, input_size)


def check_params(cell, params, input_size: int | None, who: str) -> None:
    """Raise unless ``params`` has the keys and shapes ``cell.init(key, input_size)`` gives.

    ``input_size`` is the width of the inputs the params are about to meet; None reads it
    off ``params["W_x"]`` (for ``step``/``recur``, whose input width the params define), and
    without a 2-D ``W_x`` only the shapes that do not depend on it are compared.
    A one-line error naming every bad key and its expected shape. Dtypes are not
    compared (params in another float dtype are legal). Only shapes are read, so
    under ``jit`` this runs once, at trace time, and adds nothing to the program.
    """
    head = f"{who} for {cell_repr(cell)}"
    if not isinstance(params, Mapping):
        got = "None" if params is None else type(params).__name__
        raise TypeError(
            f"{head}: expected a dict of arrays as returned by cell.init(key, input_size); "
            f"got {got}"
        )
    for k, v in params.items():
        if not hasattr(v, "shape"):
            raise TypeError(f"{head}: key {k!r} is a {type(v).__name__}, not an array")
    if input_size is None and len(getattr(params.get("W_x"), "shape", ())) == 2:
        input_size = int(params["W_x"].shape[0])
    if input_size is None:  # keep only the shapes no input width changes (None: any)
        one, two = _expected(cell, 1), _expected(cell, 2)
        expected = {k: shape if shape == two[k] else None for k, shape in one.items()}
    else:
        expected = _expected(cell, input_size)
    problems = [
        f"missing key {k!r} (expected shape {shape})"
        for k, shape in expected.items() if k not in params
    ] + [
        f"key {k!r} has shape {tuple(params[k].shape)}; expected {shape}"
        + (f" (input width {input_size})" if k == "W_x" else "")
        for k, shape in expected.items()
        if k in params and shape is not None and tuple(params[k].shape) != shape
    ] + [
        f"unexpected key {k!r} (shape {tuple(params[k].shape)}); "
        f"expected keys {', '.join(sorted(expected))}"
        for k in params if k not in expected
    ]  # fmt: skip
    if problems:
        if any(p.startswith("missing") for p in problems):
            problems[-1] += f"; got keys {', '.join(sorted(map(str, params)))}"
        raise ValueError(f"{head}: {'; '.join(problems)}")


@dataclasses.dataclass(frozen=True)
class Cell:
    """Base class: see the module docstring for the protocol."""

    #: Index in ``jax.tree.leaves(carry)`` of the carry leaf that ``recur`` returns as ``y``
    #: (``h``); ``None`` when ``y`` is read out of the state (LRU). Zoneout needs it.
    output_leaf: ClassVar[int | None] = 0
    #: The params key of the recurrent weights ``lj.RNN(weight_drop=p)`` drops (DropConnect).
    recurrent_weight: ClassVar[str] = "W_h"

    hidden_size: int
    dtype: str = "float32"
    use_bias: bool = True
    kernel_init: str = "torch_uniform"
    recurrent_init: str = "torch_uniform"
    bias_init: str = "torch_uniform"

    # ---- validation -----------------------------------------------------------------
    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)
        for field in dataclasses.fields(self):
            check_option_type(type(self).__name__, field, getattr(self, field.name))
        choose("dtype", self.dtype, DTYPES)
        for opt in ("kernel_init", "recurrent_init"):
            _init.kernel_init(getattr(self, opt))  # raises on unknown names
        if self.bias_init not in _init.BIAS_INITS:
            raise ValueError(
                f"bias_init={self.bias_init!r} is not valid for a bias vector; "
                f"choose one of {sorted(_init.BIAS_INITS)}"
            )
        self._validate()

    def _validate(self) -> None:
        """Subclasses check their own options here."""

    # ---- sizes --------------------------------------------------------------------
    @property
    def num_gates(self) -> int:
        """G: the number of ``H``-wide blocks in the fused input projection."""
        raise NotImplementedError

    @property
    def projection_size(self) -> int:
        """Width of ``project``'s output ``xp`` (the columns of ``W_x``): ``G*H`` by default."""
        return self.num_gates * self.hidden_size

    @property
    def output_size(self) -> int:
        """Width of ``y`` (and of ``h``)."""
        return self.hidden_size

    @property
    def recurrent_size(self) -> int:
        """Width of the state fed back through ``W_h``."""
        return self.output_size

    @property
    def param_dtype(self):
        return DTYPES[self.dtype]

    # ---- initialisation ------------------------------------------------------------
    def _kernel(self, key, shape, which: str):
        fn = _init.kernel_init(getattr(self, which))
        return fn(key, shape, self.param_dtype, hidden_size=self.hidden_size)

    def _bias(self, key, width: int, n_sum: int = 2):
        """A fused bias; with torch init it is the sum of ``n_sum`` U(±1/√H) draws (b_ih + b_hh)."""
        fn = _init.kernel_init(self.bias_init)
        keys = jax.random.split(key, n_sum)
        draws = [fn(k, (width,), jnp.float32, hidden_size=self.hidden_size) for k in keys]
        return sum(draws).astype(self.param_dtype)

    def _check_input_size(self, input_size) -> None:
        check_positive_int("input_size", input_size)

    def init(self, key, input_size: int) -> Params:
        """Fresh parameters for inputs of width ``input_size``: a dict of arrays."""
        raise NotImplementedError

    def initial_carry(self, params: Params, batch_shape=()) -> Carry:
        """Zero state for ``batch_shape`` (a tuple, e.g. ``(B,)``; ``()`` for one sequence),
        in the cell's ``dtype`` whatever the dtype of ``params``."""
        return jnp.zeros((*tuple(batch_shape), self.output_size), self.param_dtype)

    # ---- the step ------------------------------------------------------------------
    def project(self, params: Params, x):
        """Input projection ``x @ W_x + b``: ``[*, D] -> [*, projection_size]``; works on
        whole sequences.

        ``x`` is cast to the parameters' dtype, so a ``dtype="bfloat16"`` cell computes in bf16.
        """
        W_x = params["W_x"]
        if x.shape[-1] != W_x.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: input width mismatch: expected [..., {W_x.shape[0]}], "
                f"got shape {tuple(x.shape)}"
            )
        # Compute in the parameters' dtype (bf16 option); one 2-D matmul (rule 1 in lstmjax.fast).
        x_ND = x.astype(W_x.dtype).reshape(-1, x.shape[-1])
        if "b" in params:
            # [x, 1] @ [W_x; b]: the bias rides in the GEMM (rule 4 in lstmjax.fast): no pass
            # over [T, B, P] to add it, and its gradient is the GEMM's last row, not a reduction
            ones = jnp.ones((x_ND.shape[0], 1), x_ND.dtype)
            x_ND = jnp.concatenate([x_ND, ones], axis=1)
            W_x = jnp.concatenate([W_x, params["b"].astype(W_x.dtype)[None]], axis=0)
        return (x_ND @ W_x).reshape(*x.shape[:-1], W_x.shape[1])

    def recur(self, params: Params, carry: Carry, xp):
        """One recurrent update from a projected input ``xp [*, P]``: ``(carry, y)``.

        A family's ``recur`` starts with :meth:`_check_recur` (params of another cell or
        size, or an ``xp`` of the wrong width, are a one-line error at trace time)."""
        raise NotImplementedError

    def _check_recur(self, params: Params, xp, who: str = "recur") -> None:
        """Raise a one-line error unless ``params`` are this cell's (as ``cell.init`` gives
        them) and ``xp`` is ``projection_size`` wide. Shapes only: trace time, no cost in the
        compiled program."""
        check_params(self, params, None, f"{type(self).__name__}.{who}: params")
        if xp.shape[-1] != self.projection_size:
            raise ValueError(
                f"{type(self).__name__}.{who}: xp has shape {tuple(xp.shape)}; expected "
                f"[..., {self.projection_size}] (cell.project(params, x) of this cell)"
            )

    def constrain(self, params: Params) -> Params:
        """Project ``params`` back onto the cell's feasible set; the training loop calls it
        after every optimiser update (``lj.RNN.constrain``). The identity here; IndRNN clips
        ``|u| <= recurrent_max``."""
        return params

    def step(self, params: Params, carry: Carry, x):
        """``(carry, y) = recur(params, carry, project(params, x))`` for ``x [*batch, D]``.

        ``params`` must be what ``cell.init(key, D)`` returns (keys and shapes): another
        cell's params, or a different hidden size, is a one-line ``ValueError`` naming the
        keys, raised at trace time (shape checks only; nothing is added under ``jit``)."""
        check_params(self, params, None, f"{type(self).__name__}.step: params")
        return self.recur(params, carry, self.project(params, x))

    # ---- gates (read by lstmjax.diagnostics) ----------------------------------------
    def gate_activations(self, params: Params, carry: Carry, xp) -> dict[str, Any]:
        """The gates ``recur(params, carry, xp)`` computes, ``{name: [*B, H]}``, named as in
        the class docstring; ``{}`` for an ungated cell (this default). A subclass that
        overrides ``recur`` of a gated cell must override this too."""
        return {}

    @property
    def keep_gate(self) -> str | None:
        """Which gate multiplies the old state elementwise: a key of
        :meth:`gate_activations` (``"f"``), ``"1-<key>"`` when its complement does, or None."""
        return None

    # ---- the loop ------------------------------------------------------------------
    def _loop_carry(self, params: Params, carry: Carry, xp_T) -> Carry:
        """The former name of :meth:`loop_carry` (kept for cells that call it)."""
        return self.loop_carry(params, carry, xp_T)

    def loop_carry(self, params: Params, carry: Carry, xp_T) -> Carry:
        """``carry`` cast to the dtypes ``recur`` returns for it (a loop's fixed point).

        ``initial_carry`` has the cell's ``dtype`` while ``recur`` computes in the dtype of
        ``params``/``xp``: a float32 cell given float64 params runs its loop in float64.
        A no-op when the dtypes already agree; ``None`` stays ``None``.
        """
        if carry is None:
            return None
        step = jax.ShapeDtypeStruct(xp_T.shape[1:], xp_T.dtype)
        out = jax.eval_shape(self.recur, params, carry, step)[0]
        return jax.tree.map(
            lambda c, o: c if c.dtype == o.dtype else c.astype(o.dtype), carry, out
        )

    def recur_scan(
        self,
        params: Params,
        carry: Carry,
        xp_T,
        valid_T=None,
        reset_T=None,
        *,
        unroll: int = 1,
        return_carries: bool = False,
        reset_carry: Carry = None,
    ):
        """The loop :func:`lstmjax.scan` runs: :meth:`reference_recur_scan` here; a family
        may override it with a faster loop of identical results (see the module docstring).

        The fast loops (``lstmjax.fast``) are reverse-mode only; for ``jax.jvp``/``jacfwd``
        pass ``fast=False`` to ``lj.scan``/``lj.RNN`` (or call ``cell.reference_recur_scan``).
        An override takes ``reset_carry`` too (see :meth:`reference_recur_scan`): ``lj.scan``
        passes it only with ``remat`` and ``resets`` together.
        """
        return self.reference_recur_scan(params, carry, xp_T, valid_T, reset_T, unroll=unroll,
                                         return_carries=return_carries, reset_carry=reset_carry)

    def reference_recur_scan(
        self,
        params: Params,
        carry: Carry,
        xp_T,
        valid_T=None,
        reset_T=None,
        *,
        unroll: int = 1,
        return_carries: bool = False,
        reset_carry: Carry = None,
    ):
        """Run ``recur`` over a time-major projected sequence with ``lax.scan`` (plain autodiff).

        Shapes: ``xp_T [T, *B, P]``; ``valid_T``/``reset_T`` ``[T, *B]`` bools or None.
        At step t the carry is first replaced by ``reset_carry`` (default: the initial
        ``carry``) where ``reset_T[t]``; where ``valid_T[t]`` is False the carry is left
        unchanged and ``y`` is zero. (``reset_carry`` lets a caller run one sequence in
        pieces, each resetting to the sequence's initial carry: ``lj.scan(remat=K)``.)
        Returns ``(final_carry, ys [T, *B, H_out])``, plus every step's carry if
        ``return_carries``. The loop runs in the dtypes ``recur`` computes in
        (:meth:`loop_carry`).
        """
        carry = self._loop_carry(params, carry, xp_T)
        carry0 = carry if reset_carry is None else self._loop_carry(params, reset_carry, xp_T)

        def body(c, inputs):
            xp, valid, reset = inputs
            if reset is not None:
                c = tree_where(reset, carry0, c)
            c_new, y = self.recur(params, c, xp)
            if valid is not None:
                c_new = tree_where(valid, c_new, c)
                y = jnp.where(valid[..., None], y, jnp.zeros_like(y))
            return c_new, ((y, c_new) if return_carries else y)

        final, out = jax.lax.scan(body, carry, (xp_T, valid_T, reset_T), unroll=unroll)
        if return_carries:
            ys, carries = out
            return final, ys, carries
        return final, out
