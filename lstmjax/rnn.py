"""The sequence engine: :func:`scan` runs one cell over sequences; :class:`RNN` stacks layers.

``scan`` hoists the cell's input projection over the whole sequence
(``cell.project``) and hands the recurrent part to ``cell.recur_scan``, the
time-major loop each cell family may replace with a faster version of the same
semantics. Everything here is pure and works under ``jit``, ``vmap`` and ``grad``::

    ys_BTH, carry = lj.scan(cell, params, xs_BTD, seq_lengths=lengths_B)
    net = lj.RNN(cell, num_layers=2, bidirectional=True, dropout=0.1)
    ys_BTF, carries = net.apply(net_params, xs_BTD, seq_lengths=lengths_B, key=key)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax import _remat
from lstmjax.cells import Cell, LSTMCell
from lstmjax.cells._base import check_params as _check_cell_params
from lstmjax.cells._base import check_positive_int, tree_where

__all__ = ["scan", "RNN"]


# ---- input checks ----------------------------------------------------------------------
class _Shape:
    """A leaf placeholder whose repr is its shape, for error messages."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __repr__(self):
        return f"[{', '.join(map(str, self.shape))}]"


def _describe(tree) -> str:
    """``tree`` with every array replaced by its shape, e.g. ``([2, 5], [2, 5])``."""
    return repr(jax.tree.map(lambda a: _Shape(jnp.shape(a)), tree))


def _check_carry(carry, expected, what: str = "carry") -> None:
    """Raise unless ``carry`` has the structure and leaf shapes of ``expected``."""
    if jax.tree.structure(carry) != jax.tree.structure(expected) or any(
        jnp.shape(a) != jnp.shape(b)
        for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(expected), strict=True)
    ):
        raise ValueError(
            f"{what} has the form {_describe(carry)}; expected {_describe(expected)} "
            f"(structure and shapes of the initial carry for this batch)"
        )


def _check_cell(cell, who: str) -> None:
    """Raise a one-line ``TypeError`` unless ``cell`` is an lstmjax cell."""
    if isinstance(cell, Cell):
        return
    got = f"the string {cell!r}" if isinstance(cell, str) else type(cell).__name__
    raise TypeError(f"{who}: expected a cell (e.g. lj.cells.make('lstm', 64)), got {got}")


def _check_seq_lengths(seq_lengths, batch_shape: tuple, T: int, who: str = "seq_lengths"):
    """``seq_lengths`` as an int array of the batch shape.

    Concrete lengths outside ``[0, T]`` are a one-line error. Traced ones (under ``jit``,
    where nothing can be raised) come back as they are and act clamped to ``[0, T]``: the
    mask ``t < L`` already does, and every use of a length as an index clamps it (the
    reverse gather in :func:`_scan`, the lag index in :mod:`lstmjax.diagnostics`), so the
    forward program is not changed by an op it does not need.
    """
    if seq_lengths is None:
        return None
    lengths = jnp.asarray(seq_lengths)
    if lengths.shape != batch_shape:
        raise ValueError(
            f"seq_lengths has shape {list(lengths.shape)}; expected the batch shape "
            f"{list(batch_shape)} (one length per sequence)"
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"seq_lengths must be integers; got dtype {lengths.dtype}")
    if isinstance(lengths, jax.core.Tracer):
        return lengths
    values = np.asarray(lengths)
    bad = values[(values < 0) | (values > T)]
    if bad.size:
        shown = bad[:8].tolist() + (["..."] if bad.size > 8 else [])
        raise ValueError(
            f"{who}: seq_lengths must lie in [0, T={T}]; got {shown} out of range (T is the "
            f"time steps of xs): pad xs to the longest sequence, or clip the lengths "
            f"(np.clip(seq_lengths, 0, {T}))"
        )
    return lengths


def _check_resets(resets, batch_shape: tuple, T: int, time_major: bool):
    """``resets`` as a time-major bool array ``[T, *B]``."""
    if resets is None:
        return None
    resets = jnp.asarray(resets)
    expected = (T, *batch_shape) if time_major else (*batch_shape, T)
    if resets.shape != expected:
        layout = "[T, *batch]" if time_major else "[*batch, T]"
        raise ValueError(
            f"resets has shape {list(resets.shape)}; expected {list(expected)} ({layout} bools)"
        )
    resets = resets.astype(bool)
    return resets if time_major else jnp.moveaxis(resets, -1, 0)


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} must be a probability in [0, 1)")
    return float(value)


_CARRY = "initial_carry"  # the learned initial carry's key in params[l][d]


def _abstract_params(cell: Cell):
    """``cell.init(key, 1)``'s shapes (no FLOPs): what an option may read off the params."""
    return jax.eval_shape(lambda key: cell.init(key, 1), jax.random.key(0))


def _abstract_carry(cell: Cell):
    return jax.eval_shape(lambda key: cell.initial_carry(cell.init(key, 1), ()),
                          jax.random.key(0))


def _check_zoneout(value, cells):
    """``zoneout`` as ``0.0``, a float in (0, 1) or a pair ``(z_c, z_h)``; checked per cell."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"zoneout={value!r}: give one rate or a pair (z_c, z_h)")
        value = tuple(_check_rate("zoneout", z) for z in value)
        if value == (0.0, 0.0):
            return 0.0
    else:
        value = _check_rate("zoneout", value)
        if value == 0:
            return 0.0
    for l, cell in enumerate(cells):
        if cell.output_leaf is None:
            raise ValueError(
                f"zoneout: layer {l} ({type(cell).__name__}) reads its output out of its "
                f"state, not a carry leaf; zoneout needs a cell whose output is its h"
            )
        carry = _abstract_carry(cell)
        if isinstance(value, tuple) and not (isinstance(carry, tuple) and len(carry) == 2):
            raise ValueError(
                f"zoneout={value!r}: a pair (z_c, z_h) needs an LSTM-type carry (h, c); layer "
                f"{l} ({type(cell).__name__}) has the carry {_describe(carry)}: give one rate"
            )
    return value


def _check_weight_drop(cells) -> None:
    for l, cell in enumerate(cells):
        params = _abstract_params(cell)
        if cell.recurrent_weight not in params:
            raise ValueError(
                f"weight_drop: layer {l} ({type(cell).__name__}) has no recurrent weights "
                f"params[{cell.recurrent_weight!r}] (its params: {sorted(params)})"
            )


def _time_major(xs, time_major: bool, who: str):
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        layout = "[T, *batch, D]" if time_major else "[*batch, T, D]"
        raise ValueError(f"{who}: xs must be {layout}; got shape {list(xs.shape)}")
    return xs if time_major else jnp.moveaxis(xs, -2, 0)


def _expand_to(idx, a):
    return idx.reshape(idx.shape + (1,) * (a.ndim - idx.ndim))


# ---- scan -------------------------------------------------------------------------------
def scan(
    cell: Cell,
    params,
    xs,
    carry=None,
    *,
    seq_lengths=None,
    resets=None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    return_carries: bool = False,
    fast: bool = True,
    remat: int | str | None = None,
):
    """Run ``cell`` over sequences: ``(ys, carry)``, or ``(ys, carry, carries)``.

    Args:
      params: what ``cell.init(key, D)`` returns: the same keys and shapes (any float
        dtype). Anything else (a missing bias, another cell's params) raises an error
        naming the key and the expected shape, at trace time (no cost under ``jit``).
      xs: ``[*B, T, D]`` (``[T, *B, D]`` if ``time_major``); ``*B`` may be empty.
      carry: initial carry, with the structure and shapes of
        ``cell.initial_carry(params, B)`` (which it defaults to: zeros).
      seq_lengths: ``[*B]`` ints in ``[0, T]``; sequences are right-padded. At padded
        steps the outputs are zero and the carry is held, so the returned carry is each
        sequence's carry after its last valid step. Concrete lengths outside ``[0, T]``
        raise a ``ValueError``; traced ones (under ``jit``, where nothing can be raised) are
        clamped to ``[0, T]`` (below 0: no step runs; above T: all T steps run) on every
        path (forward, ``reverse``, fast loops, gradients), so results stay finite.
      resets: ``[*B, T]`` bools (``[T, *B]`` if ``time_major``) marking the first step of
        each packed episode: the carry is replaced by the initial ``carry`` before that
        step, so episodes never share state. With ``reverse`` the carry is reset after
        processing an episode's first step instead, so episodes stay isolated in
        either direction.
      reverse: process each sequence back to front, respecting ``seq_lengths`` (padding
        stays at the end); ``ys`` come back in the original order, and the final carry
        is the one after processing step 0.
      unroll: passed to ``lax.scan`` (through ``cell.recur_scan``).
      return_carries: also return every step's carry, leaves laid out like ``ys``
        (``[*B, T, X]``); in reverse, ``carries[..., t, :]`` is the carry after step t.
      fast: run the cell's own loop (``cell.recur_scan``: the custom-VJP fast path of the
        LSTM, LN-LSTM, GRU, Elman and IndRNN families, reverse-mode only). ``False`` runs
        ``cell.reference_recur_scan`` (autodiff through ``lax.scan``, same results), which
        forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) needs.
      remat: bounded-memory backward pass (:mod:`lstmjax._remat`): an int K >= 1 keeps
        the carry every K steps and recomputes each segment of K steps (projection and
        loop) in the backward pass, so a gradient saves O(T/K + K) steps instead of O(T);
        ``"auto"`` takes ``K = round(sqrt(T))``; None (default) is off. Same results (every
        step computes the same values); costs about one more forward pass.

    Returns:
      ``ys [*B, T, H_out]`` (or time-major), the final carry, and optionally ``carries``.
    """
    _check_cell(cell, "lj.scan")
    if not isinstance(fast, bool):
        raise ValueError(f"lj.scan: fast={fast!r} must be True or False")
    remat = _remat.check_remat(remat, "lj.scan")
    loop = cell.recur_scan if fast else cell.reference_recur_scan
    return _scan(cell, params, xs, carry, seq_lengths=seq_lengths, resets=resets,
                 reverse=reverse, time_major=time_major, unroll=unroll,
                 return_carries=return_carries, loop=loop, remat=remat)


def _scan(cell, params, xs, carry, *, seq_lengths, resets, reverse, time_major, unroll,
          return_carries, loop, remat=None):
    """:func:`scan` with the time-major loop ``loop`` (``cell.recur_scan``'s signature) and
    ``remat`` (checked) as in :func:`scan`."""
    xs_T = _time_major(xs, time_major, "scan")
    _check_cell_params(cell, params, xs_T.shape[-1], "lj.scan: params")
    T, batch_shape = xs_T.shape[0], tuple(xs_T.shape[1:-1])
    lengths_B = _check_seq_lengths(seq_lengths, batch_shape, T, "lj.scan")
    reset_T = _check_resets(resets, batch_shape, T, time_major)
    initial = cell.initial_carry(params, batch_shape)
    if carry is None:
        carry = initial
    else:
        _check_carry(carry, initial)

    t_T = jnp.arange(T).reshape((T,) + (1,) * len(batch_shape))
    valid_T = None if lengths_B is None else t_T < lengths_B
    if reset_T is not None and valid_T is not None and not reverse:
        reset_T = reset_T & valid_T  # a reset in the padding must not clear the held carry
    if reverse:
        if reset_T is not None:
            # Backwards, an episode ends (reset the carry) after its first step.
            nxt = jnp.concatenate([reset_T[1:], jnp.zeros_like(reset_T[:1])], axis=0)
            reset_T = nxt if lengths_B is None else nxt & (t_T + 1 < lengths_B)
        if lengths_B is None:
            flip = lambda a: jnp.flip(a, axis=0)
        else:
            # Reverse each valid prefix in place; the gather is its own inverse. A traced
            # length above T (unchecked under jit) acts as T, never an out-of-range index.
            idx_T = jnp.where(valid_T, jnp.minimum(lengths_B, T) - 1 - t_T, t_T)
            flip = lambda a: jnp.take_along_axis(a, _expand_to(idx_T, a), axis=0)
        xs_T = flip(xs_T)
        reset_T = None if reset_T is None else flip(reset_T)

    if remat is None or T == 0:
        xp_T = cell.project(params, xs_T)
        out = loop(params, carry, xp_T, valid_T, reset_T, unroll=unroll,
                   return_carries=return_carries)
    else:
        # Segments hand the carry on: give it the loop's dtypes up front (a fixed point).
        xp_1 = jax.eval_shape(cell.project, params, xs_T[:1])
        out = _remat.segmented(cell.project, loop, _remat.segment_length(remat, T), params,
                               cell.loop_carry(params, carry, xp_1), xs_T, valid_T, reset_T,
                               unroll=unroll, return_carries=return_carries)
    final, ys_T = out[0], out[1]
    carries_T = out[2] if return_carries else None
    if reverse:
        ys_T = flip(ys_T)
        carries_T = None if carries_T is None else jax.tree.map(flip, carries_T)
    if not time_major:
        ys_T = jnp.moveaxis(ys_T, 0, -2)
        if carries_T is not None:
            carries_T = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -2), carries_T)
    if return_carries:
        return ys_T, final, carries_T
    return ys_T, final


def _scan_recurrent_dropout(cell, params, xs_T, carry, key, rate: float, *, make_loop,
                            loop_key, **kwargs):
    """``scan`` (time-major) with ``h_{t-1}`` times a variational mask ``[*B, R]`` in ``h @ W_h``
    (``W_h``: ``params[cell.recurrent_weight]``; a vector, as IndRNN's ``u``, is elementwise).

    Each sequence gets its own ``diag(m) W_h``: the batch is vmapped so every
    sequence runs the loop ``make_loop(k)`` with batch shape ``(1,)`` and its own kernel
    (``k``: the sequence's own key from ``loop_key``, for zoneout; None if ``loop_key`` is).
    """
    name = cell.recurrent_weight  # "W_h" [R, G*H]; IndRNN's "u" [H] (elementwise)
    if name not in params:
        raise ValueError(
            f"recurrent_dropout needs a cell with a recurrent kernel params[{name!r}]; "
            f"{type(cell).__name__} params have {sorted(params)}"
        )
    T, batch_shape = xs_T.shape[0], xs_T.shape[1:-1]
    N = math.prod(batch_shape)
    lengths, resets = kwargs.pop("seq_lengths"), kwargs.pop("resets")
    W_h = params[name]
    mask = _dropout(key, rate, jnp.ones((*batch_shape, W_h.shape[0]), W_h.dtype))

    def per_example(a, axis):  # [.., *B, ..] -> [.., N, 1, ..] with N at ``axis``
        return a.reshape(a.shape[:axis] + (N, 1) + a.shape[axis + len(batch_shape) :])

    def one(m_R, xs_T1, carry1, lengths1, resets_T1, key1):
        p = {**params, name: W_h * (m_R if W_h.ndim == 1 else m_R[:, None])}
        return _scan(cell, p, xs_T1, carry1, seq_lengths=lengths1, resets=resets_T1,
                     time_major=True, return_carries=False, loop=make_loop(key1), **kwargs)

    keys = None if loop_key is None else jax.random.split(loop_key, N)
    ys, final = jax.vmap(one, in_axes=(0, 1, 0, 0, 1, 0), out_axes=(1, 0))(
        mask.reshape(N, -1),
        per_example(xs_T, 1),
        jax.tree.map(lambda a: per_example(a, 0), carry),
        None if lengths is None else per_example(lengths, 0),
        None if resets is None else per_example(resets, 1),
        keys,
    )
    ys = ys.reshape((T, *batch_shape, ys.shape[-1]))
    final = jax.tree.map(lambda a: a.reshape((*batch_shape, a.shape[-1])), final)
    return ys, final


def _dropout(key, rate: float, x):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _zoneout_loop(cell, rates, key, params, carry, xp_T, valid_T=None, reset_T=None, *,
                  unroll=1, return_carries=False, reset_carry=None):
    """``cell.reference_recur_scan`` with zoneout (Krueger et al. 2017) on the carry.

    ``rates[k]`` is the zoneout probability of carry leaf k (``jax.tree.leaves`` order).
    With ``c̃ = recur(c)``'s carry, per element, the new carry is::

        c' = d ⊙ c + (1 - d) ⊙ c̃,   d ~ Bernoulli(z) fresh at every step     (key given)
        c' = z · c + (1 - z) · c̃                                             (key None)

    and ``y`` is the zoned-out leaf ``cell.output_leaf`` (``h``). Leaves of rate 0 are not
    touched; resets and masks act as in ``Cell.reference_recur_scan``.
    """
    carry = cell.loop_carry(params, carry, xp_T)
    carry0 = carry if reset_carry is None else cell.loop_carry(params, reset_carry, xp_T)
    leaves0, treedef = jax.tree.flatten(carry0)
    keep_T = None
    if key is not None:
        keys = jax.random.split(key, len(leaves0))
        keep_T = [
            None if z == 0 else jax.random.bernoulli(k, z, (xp_T.shape[0], *a.shape))
            for k, z, a in zip(keys, rates, leaves0, strict=True)
        ]

    def body(c, inputs):
        xp, valid, reset, keep = inputs
        if reset is not None:
            c = tree_where(reset, carry0, c)
        c_new, _ = cell.recur(params, c, xp)
        mixed = []
        for k, (prev, new, z) in enumerate(
            zip(jax.tree.leaves(c), jax.tree.leaves(c_new), rates, strict=True)
        ):
            if z == 0:
                mixed.append(new)
            elif keep is None:
                mixed.append(z * prev + (1.0 - z) * new)
            else:
                mixed.append(jnp.where(keep[k], prev, new))
        c_new, y = jax.tree.unflatten(treedef, mixed), mixed[cell.output_leaf]
        if valid is not None:
            c_new = tree_where(valid, c_new, c)
            y = jnp.where(valid[..., None], y, jnp.zeros_like(y))
        return c_new, ((y, c_new) if return_carries else y)

    final, out = jax.lax.scan(body, carry, (xp_T, valid_T, reset_T, keep_T), unroll=unroll)
    return (final, *out) if return_carries else (final, out)


# ---- the layer stack ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, init=False)
class RNN:
    """A stack of recurrent layers, optionally bidirectional, with dropout and skips.

    ``RNN(cell_or_cells, num_layers=None, bidirectional=False, dropout=0.0,
    recurrent_dropout=0.0, proj_size=0, residual=False, zoneout=0.0, weight_drop=0.0,
    learn_initial_carry=False, fast=True, remat=None)``

    * ``cell_or_cells``: one cell, repeated ``num_layers`` times (default 1), or a
      sequence of cells, one per layer (``num_layers``, if given, must match).
    * ``dropout``: as PyTorch, on the outputs of every layer but the last (a fresh
      mask per element).
    * ``recurrent_dropout``: variational (Gal & Ghahramani 2016): one mask per
      sequence, layer and direction, reused at every step, on ``h_{t-1}`` where it
      enters the recurrent product ``h_{t-1} @ W_h``. The batch is then vmapped
      (a per-sequence kernel), which is slower than the plain path.
    * ``proj_size``: PyTorch's LSTM projection; rebuilds every layer's LSTM cell
      with ``proj_size`` (an error for other cells).
    * ``residual``: a layer whose input and output widths agree (any but the first)
      adds its input to its output.
    * ``zoneout`` (Krueger et al. 2017): each carry element keeps its previous value with
      probability ``z``, ``c_t = d ⊙ c_{t-1} + (1 - d) ⊙ c̃_t``, ``d ~ Bernoulli(z)`` drawn
      afresh per element, step, sequence, layer and direction; the output is the zoned-out
      ``h``. At evaluation the expectation ``c_t = z·c_{t-1} + (1 - z)·c̃_t``. A float applies
      to every carry leaf; for an LSTM-type carry ``(h, c)`` a pair ``(z_c, z_h)`` (the
      paper's order: cell state first; it recommends ``(0.5, 0.05)``). Runs a plain
      ``lax.scan`` over ``cell.recur`` (no fast path); not for cells whose output is not a
      carry leaf (LRU).
    * ``weight_drop`` (DropConnect on the recurrent weights, Merity et al. 2017):
      ``W_h ⊙ m / (1 - p)``, ``m ~ Bernoulli(1 - p)``, one mask per ``apply`` call (the
      batch), layer and direction, shared by all time steps; rescaled by ``1/(1-p)`` as
      AWD-LSTM (``F.dropout`` on the weight), so evaluation uses ``W_h`` itself. Acts on
      ``params[cell.recurrent_weight]`` (``W_h``; IndRNN's ``u``); the fast path still runs.
    * ``learn_initial_carry``: the initial carry is a parameter,
      ``params[l][d]["initial_carry"]`` (the cell's carry for one sequence, init zeros),
      broadcast over the batch; a ``carry`` passed to ``apply`` still overrides it.
    * ``fast``: ``False`` runs every layer's ``cell.reference_recur_scan`` (needed for
      ``jax.jvp``/``jax.jacfwd``; see :func:`scan`).
    * ``remat``: every layer and direction runs :func:`scan`'s ``remat`` (an int K >= 1 or
      ``"auto"``: keep the carry every K steps, recompute segments in the backward pass).
      Not with ``zoneout``, whose masks are drawn for the whole sequence at once.

    Params are a list per layer of a list per direction (forward, then backward)
    of cell params: ``params[l][d]`` (plus ``"initial_carry"`` with
    ``learn_initial_carry``; :meth:`cell_params` strips it). Carries have the same layout:
    ``carries[l][d]`` is the carry of the cell of layer ``l``, direction ``d``. Bidirectional
    outputs are ``concat([forward, backward], -1)`` as in PyTorch.
    """

    cells: tuple[Cell, ...]
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    residual: bool = False
    zoneout: float | tuple[float, float] = 0.0
    weight_drop: float = 0.0
    learn_initial_carry: bool = False
    fast: bool = True
    remat: int | str | None = None

    def __init__(
        self,
        cell_or_cells,
        num_layers: int | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        proj_size: int = 0,
        residual: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        weight_drop: float = 0.0,
        learn_initial_carry: bool = False,
        fast: bool = True,
        remat: int | str | None = None,
    ):
        if isinstance(cell_or_cells, Cell):
            if num_layers is not None:
                check_positive_int("num_layers", num_layers)
            layers = (cell_or_cells,) * (num_layers or 1)
        elif (
            isinstance(cell_or_cells, Sequence)
            and cell_or_cells
            and all(isinstance(c, Cell) for c in cell_or_cells)
        ):
            layers = tuple(cell_or_cells)
            if num_layers is not None and num_layers != len(layers):
                raise ValueError(
                    f"num_layers={num_layers!r} but {len(layers)} cells were given; "
                    f"pass one cell per layer or leave num_layers out"
                )
        else:
            if isinstance(cell_or_cells, str):
                raise TypeError(
                    f"RNN expects a cell or a non-empty sequence of cells (e.g. "
                    f"lj.cells.make('lstm', 64)); got the string {cell_or_cells!r}"
                )
            raise TypeError(
                f"RNN expects a cell or a non-empty sequence of cells (lstmjax.cells.Cell); "
                f"got {cell_or_cells!r}"
            )
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"proj_size={proj_size!r} must be a non-negative integer")
        if proj_size:
            for l, cell in enumerate(layers):
                if not isinstance(cell, LSTMCell):
                    raise ValueError(
                        f"proj_size={proj_size} needs LSTM cells (PyTorch's LSTM projection); "
                        f"layer {l} is {type(cell).__name__}"
                    )
            layers = tuple(dataclasses.replace(c, proj_size=proj_size) for c in layers)
        flags = (("bidirectional", bidirectional), ("residual", residual),
                 ("learn_initial_carry", learn_initial_carry), ("fast", fast))
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise ValueError(f"{name}={flag!r} must be True or False")
        zoneout = _check_zoneout(zoneout, layers)
        remat = _remat.check_remat(remat, "RNN")
        if remat is not None and zoneout != 0:
            raise ValueError(
                f"RNN: remat={remat!r} does not combine with zoneout={zoneout!r} (its masks "
                f"are drawn for the whole sequence at once); turn one of them off"
            )
        weight_drop = _check_rate("weight_drop", weight_drop)
        if weight_drop:
            _check_weight_drop(layers)
        object.__setattr__(self, "cells", layers)
        object.__setattr__(self, "bidirectional", bidirectional)
        object.__setattr__(self, "dropout", _check_rate("dropout", dropout))
        object.__setattr__(
            self, "recurrent_dropout", _check_rate("recurrent_dropout", recurrent_dropout)
        )
        object.__setattr__(self, "residual", residual)
        object.__setattr__(self, "zoneout", zoneout)
        object.__setattr__(self, "weight_drop", weight_drop)
        object.__setattr__(self, "learn_initial_carry", learn_initial_carry)
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "remat", remat)

    # ---- sizes ---------------------------------------------------------------------
    def _zoneout_rates(self, carry) -> tuple[float, ...] | None:
        """Zoneout probability per leaf of ``carry`` (leaves order), or None if off."""
        if self.zoneout == 0:
            return None
        n = len(jax.tree.leaves(carry))
        if isinstance(self.zoneout, tuple):
            z_c, z_h = self.zoneout
            return (z_h, z_c)  # the carry is (h, c)
        return (self.zoneout,) * n

    @property
    def num_layers(self) -> int:
        return len(self.cells)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Width of ``ys``: the last layer's output width times the number of directions."""
        return self.cells[-1].output_size * self.num_directions

    @property
    def needs_key(self) -> bool:
        """Whether training-mode ``apply`` needs a PRNG key (some dropout or zoneout is on)."""
        return (self.dropout > 0 or self.recurrent_dropout > 0 or self.weight_drop > 0
                or self.zoneout != 0)

    # ---- params and carries --------------------------------------------------------
    def init(self, key, input_size: int):
        """Fresh params ``[[cell params per direction] per layer]`` for inputs of width D."""
        check_positive_int("input_size", input_size)
        nd = self.num_directions
        keys = jax.random.split(key, self.num_layers * nd)
        params, width = [], input_size
        for l, cell in enumerate(self.cells):
            layer = [cell.init(keys[l * nd + d], width) for d in range(nd)]
            if self.learn_initial_carry:
                layer = [{**p, _CARRY: cell.initial_carry(p, ())} for p in layer]
            params.append(layer)
            width = cell.output_size * nd
        return params

    def initial_carry(self, params, batch_shape=()):
        """Carries ``[[carry per direction] per layer]`` for ``batch_shape``: zeros, or the
        learned ``params[l][d]["initial_carry"]`` broadcast over the batch."""
        self._check_params(params)
        batch_shape = tuple(batch_shape)

        def one(cell, p):
            if not self.learn_initial_carry:
                return cell.initial_carry(p, batch_shape)
            return jax.tree.map(lambda a: jnp.broadcast_to(a, batch_shape + a.shape), p[_CARRY])

        return [[one(cell, p) for p in layer] for cell, layer in zip(self.cells, params,
                                                                      strict=True)]

    def cell_params(self, params):
        """``params`` with each ``params[l][d]`` the plain cell params (the learned initial
        carry removed), as ``cell.init`` returns them."""
        self._check_params(params)
        return [[{k: v for k, v in p.items() if k != _CARRY} if self.learn_initial_carry
                 else p for p in layer] for layer in params]

    def constrain(self, params):
        """Every layer's ``cell.constrain`` applied to its params (IndRNN's ``|u|`` bound);
        the training loop calls this after each optimiser update."""
        self._check_params(params)

        def one(cell, p):
            if not self.learn_initial_carry:
                return cell.constrain(p)
            return {**cell.constrain({k: v for k, v in p.items() if k != _CARRY}),
                    _CARRY: p[_CARRY]}

        return [[one(cell, p) for p in layer] for cell, layer in zip(self.cells, params,
                                                                      strict=True)]

    def _check_params(self, params) -> None:
        nd = self.num_directions
        ok = (
            isinstance(params, (list, tuple))
            and len(params) == self.num_layers
            and all(isinstance(layer, (list, tuple)) and len(layer) == nd for layer in params)
        )
        if not ok:
            raise ValueError(
                f"RNN params must be a list of {self.num_layers} layers, each a list of {nd} "
                f"cell params (one per direction), as returned by RNN.init"
            )
        if self.learn_initial_carry:
            for l, layer in enumerate(params):
                for d, p in enumerate(layer):
                    if not isinstance(p, Mapping) or _CARRY not in p:
                        raise ValueError(
                            f"RNN(learn_initial_carry=True): params[{l}][{d}] has no "
                            f"{_CARRY!r} entry; build the params with this RNN's init"
                        )

    # ---- forward -------------------------------------------------------------------
    def apply(
        self,
        params,
        xs,
        carry=None,
        *,
        seq_lengths=None,
        resets=None,
        key=None,
        deterministic: bool | None = None,
        time_major: bool = False,
        unroll: int = 1,
    ):
        """``(ys, carries)`` for ``xs [*B, T, D]`` (``[T, *B, D]`` if ``time_major``).

        ``carry`` (and the returned ``carries``) is ``[[carry per direction] per layer]``;
        the backward direction's final carry is the one after step 0. ``seq_lengths``
        and ``resets`` are as in :func:`scan`: lengths outside ``[0, T]`` raise a
        ``ValueError`` when concrete and are clamped to ``[0, T]`` under ``jit`` (both
        directions alike; outputs and gradients stay finite). Dropout, zoneout and weight
        drop run unless ``deterministic``, which defaults to ``key is None``: pass a ``key``
        to train, and nothing (or ``deterministic=True``) to evaluate (zoneout then takes
        its expectation).
        """
        self._check_params(params)
        xs_T = _time_major(xs, time_major, "RNN.apply")
        width = xs_T.shape[-1]
        cell_params = self.cell_params(params)
        for l, cell in enumerate(self.cells):
            for d in range(self.num_directions):
                where = f"layer {l} {('forward', 'backward')[d]}"
                _check_cell_params(cell, cell_params[l][d], width,
                                   f"lj.RNN.apply: params[{l}][{d}] ({where})")
            width = cell.output_size * self.num_directions
        T, batch_shape = xs_T.shape[0], tuple(xs_T.shape[1:-1])
        lengths_B = _check_seq_lengths(seq_lengths, batch_shape, T, "lj.RNN.apply")
        reset_T = _check_resets(resets, batch_shape, T, time_major)
        if deterministic is None:
            deterministic = key is None
        train = not deterministic and self.needs_key
        if train and key is None:
            raise ValueError(
                f"RNN.apply: dropout={self.dropout}, recurrent_dropout={self.recurrent_dropout}, "
                f"zoneout={self.zoneout}, weight_drop={self.weight_drop} need a PRNG key: "
                f"pass key=jax.random.key(...), or deterministic=True"
            )
        initial = self.initial_carry(params, batch_shape)
        if carry is None:
            carry = initial
        else:
            _check_carry(carry, initial, "RNN carry")

        h_T, carries = xs_T, []
        for l, cell in enumerate(self.cells):
            k_drop, k_rec = jax.random.split(jax.random.fold_in(key, l)) if train else (None,) * 2
            # zoneout and weight-drop keys: a stream of their own (fold_in data >= num_layers)
            k_zone, k_wd = (jax.random.split(jax.random.fold_in(key, self.num_layers + l))
                            if train else (None,) * 2)
            rates = self._zoneout_rates(carry[l][0])
            outs, layer_carries = [], []
            for d in range(self.num_directions):
                kwargs = dict(seq_lengths=lengths_B, resets=reset_T, reverse=d == 1,
                              unroll=unroll, remat=self.remat)
                p, c = cell_params[l][d], carry[l][d]
                if train and self.weight_drop > 0:
                    name = cell.recurrent_weight
                    p = {**p, name: _dropout(jax.random.fold_in(k_wd, d), self.weight_drop,
                                             p[name])}
                if rates is not None:
                    make_loop = functools.partial(functools.partial, _zoneout_loop, cell, rates)
                elif self.fast:
                    make_loop = lambda _, cell=cell: cell.recur_scan  # noqa: E731
                else:
                    make_loop = lambda _, cell=cell: cell.reference_recur_scan  # noqa: E731
                loop_key = jax.random.fold_in(k_zone, d) if train and rates is not None else None
                if train and self.recurrent_dropout > 0:
                    k_d = jax.random.fold_in(k_rec, d)
                    y, c = _scan_recurrent_dropout(
                        cell, p, h_T, c, k_d, self.recurrent_dropout, make_loop=make_loop,
                        loop_key=loop_key, **kwargs
                    )
                else:
                    y, c = _scan(cell, p, h_T, c, time_major=True, return_carries=False,
                                 loop=make_loop(loop_key), **kwargs)
                outs.append(y)
                layer_carries.append(c)
            y_T = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
            if self.residual and l > 0 and y_T.shape[-1] == h_T.shape[-1]:
                y_T = y_T + h_T
            if train and self.dropout > 0 and l < self.num_layers - 1:
                y_T = _dropout(k_drop, self.dropout, y_T)
            h_T = y_T
            carries.append(layer_carries)
        ys = h_T if time_major else jnp.moveaxis(h_T, 0, -2)
        return ys, carries
