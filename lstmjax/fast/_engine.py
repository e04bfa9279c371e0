"""The generic fast ``recur_scan``: a custom VJP around a family *kernel*.

A kernel is a frozen (hashable) dataclass describing one cell configuration, with
``y_leaf`` (the index of the carry leaf that equals ``y``), ``bwd_consts(P)``, an
optional ``prepare(xp_T)`` and three pure functions:

* ``fwd_step(P, carry_in, xp) -> (carry_new, y, res)`` — one step that also returns
  the residuals ``res`` (gate activations) the backward pass needs (``xp`` is a step
  of ``kernel.prepare(xp_T)`` when the kernel defines it);
* ``bwd_step(Q, carry_in, res, dcarry_new, dy) -> (dcarry_in, dxp[, aux])`` — its
  transpose (``Q = bwd_consts(P)``: the parameters plus loop constants such as ``W_hᵀ``);
  the optional ``aux`` (a pytree, linear in the cotangents) holds per-step cotangents the
  parameter gradients need beyond ``dxp`` (the layer-norm LSTM's ``d(h W_h)``);
* ``param_grads(P, carry_in_T, carry_new_T, res_T, dxp_T[, aux_T]) -> dP`` — the
  gradients of the recurrent parameters ``P``, computed *after* the reverse loop
  as single matmuls over all ``T*B`` rows (``dW_h = Σ_t h_{t-1}ᵀ dz_t``).

This module owns the semantics shared by every family, identical to
:meth:`lstmjax.cells.Cell.reference_recur_scan`: at step t the carry is first replaced by
the reset carry (the initial carry unless ``reset_carry`` is given) where ``reset_T[t]``;
where ``valid_T[t]`` is False the carry is kept and ``y`` is zero; ``return_carries`` also
returns every step's carry. The reverse loop propagates only the carry cotangents (``dh``,
``dc``) and emits the pre-activation cotangents; nothing is accumulated inside it except
the reset carry's cotangent when there are resets.

Traced inside :func:`stop_at_last_valid`, with masks (``valid_T``; no resets, no
``return_carries``, ``unroll=1``) both loops are
``fori_loop``s that stop after the last step at which any sequence is valid (past it every
step only holds the carry and emits zeros), so a batch padded into a longer buffer -- a
traced length drawn by ``task.sample_at`` -- runs only its own steps; the parameter
gradients are then summed over blocks of ``_GRAD_ROWS`` steps up to that point. Under
``jax.vmap`` the trip count is the longest over the mapped axis (:func:`_trip_count`).

Inference saves nothing: called outside ``jax.grad``/``vjp``, ``jax.custom_vjp`` runs the
primal, which stacks only the outputs; the residuals (every step's carry and gate
activations) are stacked only by the forward that a gradient runs (``run_fwd``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp


def _where(cond, a, b):
    """Per-example select of pytrees with leaves ``[*B, X]`` by ``cond [*B]``."""
    return jax.tree.map(lambda u, v: jnp.where(cond[..., None], u, v), a, b)


def _zeros_where(cond, a):
    return jax.tree.map(lambda u: jnp.where(cond[..., None], u, jnp.zeros_like(u)), a)


def _shift_in(carry0, reset0, carries_T, reset_T):
    """``carry_in_T[t]``: the carry entering step t (after a reset to ``reset0``), for every t."""

    def one(c0, cs):
        return jnp.concatenate([c0[None], cs[:-1]], axis=0)

    prev = jax.tree.map(one, carry0, carries_T)
    if reset_T is None:
        return prev
    return jax.tree.map(lambda r0, p: jnp.where(reset_T[..., None], r0[None], p), reset0, prev)


@jax.custom_batching.custom_vmap
def _trip_count(valid_T):
    """Int32 scalar: 1 + the last step at which any sequence is valid (0 if none). Past it
    every step only holds the carry and emits zeros, so a loop may stop there.

    Under ``jax.vmap`` (e.g. seeds whose batches have different lengths) the count is the
    largest over the mapped axis and stays *unbatched*: running extra held steps is exact,
    and a while loop with a batched trip count would select every loop buffer at every step
    (quadratic in T)."""
    T = valid_T.shape[0]
    any_T = jnp.any(valid_T.reshape(T, -1), axis=1)
    return jnp.max(jnp.where(any_T, jnp.arange(1, T + 1, dtype=jnp.int32), 0))


@_trip_count.def_vmap
def _trip_count_vmap(axis_size, in_batched, valid_T):
    (batched,) = in_batched
    if batched:  # the mapped axis leads: fold it into the batch axes
        valid_T = jnp.moveaxis(valid_T, 0, -1)
    return _trip_count(valid_T), False


def _index(tree, t):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, t, keepdims=False), tree)


def _put(bufs, t, tree):
    return jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, t, 0), bufs, tree)


_GRAD_ROWS = 32  # steps per block of the masked loop's parameter-gradient matmuls


def _expand(keep_K, a):
    return keep_K.reshape((-1,) + (1,) * (a.ndim - 1))


def _zero_bufs(T, tree_shapes):
    return jax.tree.map(lambda s: jnp.zeros((T, *s.shape), s.dtype), tree_shapes)


_STOP_AT_LAST_VALID: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lstmjax_stop_at_last_valid", default=False)


@contextlib.contextmanager
def stop_at_last_valid():
    """While tracing inside this context, masked fast loops (``seq_lengths``) stop after the
    batch's last valid step (a dynamic trip count) instead of scanning every step: for
    batches padded into a buffer much longer than their lengths (``task.sample_at``). Scoped
    to the tracing thread; programs traced outside it are unchanged (a plain ``lax.scan``,
    faster when the batch fills its buffer)."""
    token = _STOP_AT_LAST_VALID.set(True)
    try:
        yield
    finally:
        _STOP_AT_LAST_VALID.reset(token)


def stops_at_last_valid() -> bool:
    """Whether :func:`stop_at_last_valid` is active in this thread."""
    return _STOP_AT_LAST_VALID.get()


@functools.lru_cache(maxsize=256)
def make_scan(kernel, has_valid: bool, has_reset: bool, return_carries: bool, unroll: int,
              stop_early: bool = False):
    """The custom-VJP loop ``run(P, carry0, reset0, xp_T, valid_T, reset_T)`` for one
    configuration; a reset restores ``reset0`` (None without resets; ``carry0`` for
    ``Cell.recur_scan``'s default).

    Undifferentiated (``jax.custom_vjp`` then runs the primal), the loop is *lean*: it
    stacks only ``ys`` (and the carries if ``return_carries``), never the residuals the
    backward pass needs. Under ``jax.grad``/``vjp`` its forward (``run_fwd``) also saves
    every step's carry and gate activations.
    """

    # With masks (and no resets or stacked carries) the loops stop after the last step at
    # which any sequence is valid: a batch padded into a longer buffer costs no loop steps.
    dynamic = stop_early and has_valid and not has_reset and not return_carries and unroll == 1

    def forward_dynamic(P, carry0, xp_T, valid_T, save: bool):
        xs = kernel.prepare(xp_T) if hasattr(kernel, "prepare") else xp_T
        T = valid_T.shape[0]

        def step(c, t):
            c_new, y, res = kernel.fwd_step(P, c, _index(xs, t))
            valid = valid_T[t]
            return _where(valid, c_new, c), _zeros_where(valid, y), c_new, res

        _, y_s, _, res_s = jax.eval_shape(step, carry0, 0)
        c_s = jax.eval_shape(lambda c: c, carry0)

        def body(t, acc):
            c, ys, cs, rs = acc
            c, y, _, res = step(c, t)
            if save:
                cs, rs = _put(cs, t + 1, c), _put(rs, t, res)
            return c, _put(ys, t, y), cs, rs

        # saved carries: T + 1 rows, row 0 the initial carry (so row t enters step t and row
        # t + 1 leaves it, without a shifted copy)
        cs0 = _put(_zero_bufs(T + 1, c_s), 0, carry0) if save else None
        bufs = (_zero_bufs(T, y_s), cs0, _zero_bufs(T, res_s) if save else None)
        final, ys, carries, res = jax.lax.fori_loop(0, _trip_count(valid_T), body,
                                                    (carry0, *bufs))
        return (final, ys), (carries, res)

    def forward(P, carry0, reset0, xp_T, valid_T, reset_T, save: bool):
        if dynamic:
            return forward_dynamic(P, carry0, xp_T, valid_T, save)
        treedef = jax.tree.structure(carry0)
        keep_carries = save or return_carries
        # Without masks the carry leaf ``y_leaf`` equals y at every step: store it once.
        dedup = not has_valid

        def body(c, inputs):
            xp, valid, reset = inputs
            c_in = _where(reset, reset0, c) if has_reset else c
            c_new, y, res = kernel.fwd_step(P, c_in, xp)
            if has_valid:
                c_new = _where(valid, c_new, c_in)
                y = _zeros_where(valid, y)
            leaves = None
            if keep_carries:
                leaves = [v for k, v in enumerate(jax.tree.leaves(c_new))
                          if not (dedup and k == kernel.y_leaf)]
            return c_new, (y, leaves, res if save else None)

        # A kernel may re-lay its inputs out once (e.g. split gate blocks) rather than
        # slice every step (rule 2 in lstmjax.fast).
        xs = kernel.prepare(xp_T) if hasattr(kernel, "prepare") else xp_T
        final, (ys, leaves, res) = jax.lax.scan(
            body, carry0, (xs, valid_T, reset_T), unroll=unroll
        )
        carries = None
        if keep_carries:
            if dedup:
                leaves.insert(kernel.y_leaf, ys)
            carries = jax.tree.unflatten(treedef, leaves)
        out = (final, ys, carries) if return_carries else (final, ys)
        return out, (carries, res)

    @jax.custom_vjp
    def run(P, carry0, reset0, xp_T, valid_T, reset_T):
        return forward(P, carry0, reset0, xp_T, valid_T, reset_T, save=False)[0]

    def run_fwd(P, carry0, reset0, xp_T, valid_T, reset_T):
        out, (carries, res) = forward(P, carry0, reset0, xp_T, valid_T, reset_T, save=True)
        return out, (P, carry0, reset0, carries, res, valid_T, reset_T)

    def run_bwd(saved, cts):
        P, carry0, reset0, carries, res, valid_T, reset_T = saved
        if return_carries:
            d_final, dys, dcarries = cts
        else:
            (d_final, dys), dcarries = cts, None
        Q = kernel.bwd_consts(P)
        if dynamic:
            return _backward_dynamic(P, Q, carries, res, d_final, dys, valid_T)
        carry_in = _shift_in(carry0, reset0, carries, reset_T if has_reset else None)

        def body(acc, inputs):
            dc, dc0 = acc
            c_in, r, dy, dcs, valid, reset = inputs
            if dcs is not None:
                dc = jax.tree.map(jnp.add, dc, dcs)
            if has_valid:
                dc_new, dy = _zeros_where(valid, dc), _zeros_where(valid, dy)
            else:
                dc_new = dc
            dc_in, dxp, *aux = kernel.bwd_step(Q, c_in, r, dc_new, dy)
            if has_valid:
                dc_in = jax.tree.map(jnp.add, dc_in, _zeros_where(~valid, dc))
            if has_reset:
                dc0 = jax.tree.map(jnp.add, dc0, _zeros_where(reset, dc_in))
                dc_in = _zeros_where(~reset, dc_in)
            return (dc_in, dc0), (dxp, *aux)

        zero0 = jax.tree.map(jnp.zeros_like, reset0) if has_reset else None
        (dcarry0, dreset0), (dxp_T, *aux_T) = jax.lax.scan(
            body,
            (d_final, zero0),
            (carry_in, res, dys, dcarries, valid_T, reset_T),
            reverse=True,
            unroll=unroll,
        )
        dP = kernel.param_grads(P, carry_in, carries, res, dxp_T, *aux_T)
        return dP, dcarry0, dreset0, dxp_T, None, None

    def _backward_dynamic(P, Q, cbuf, res, d_final, dys, valid_T):
        """``run_bwd`` over the first ``n = _trip_count(valid_T)`` steps only (later steps are
        padding whose cotangents are zero; their ``dxp`` rows stay zero). ``cbuf``: the
        forward's ``T + 1`` saved carries. The parameter gradients, sums over rows, are
        summed over blocks of ``_GRAD_ROWS`` steps covering the first ``n`` only."""
        T = valid_T.shape[0]

        def step(dc, t):
            valid = valid_T[t]
            dc_new, dy = _zeros_where(valid, dc), _zeros_where(valid, _index(dys, t))
            dc_in, dxp, *aux = kernel.bwd_step(Q, _index(cbuf, t), _index(res, t), dc_new, dy)
            return jax.tree.map(jnp.add, dc_in, _zeros_where(~valid, dc)), (dxp, *aux)

        _, outs_s = jax.eval_shape(step, d_final, 0)
        n = _trip_count(valid_T)

        def body(i, acc):
            dc, outs = acc
            t = n - 1 - i
            dc, out = step(dc, t)
            return dc, _put(outs, t, out)

        dcarry0, (dxp_T, *aux_T) = jax.lax.fori_loop(0, n, body,
                                                     (d_final, _zero_bufs(T, outs_s)))
        K = min(_GRAD_ROWS, T)

        def block(j):
            # rows [s, s + K), s clamped so the block fits; rows before j*K were summed by the
            # previous block: their cotangents are zeroed (param_grads is linear in them)
            s = jnp.minimum(j * K, T - K)
            keep = (s + jnp.arange(K)) >= j * K

            def rows(tree, at):
                return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, at, K), tree)

            dz = jax.tree.map(lambda a: jnp.where(_expand(keep, a), a, jnp.zeros_like(a)),
                              rows((dxp_T, *aux_T), s))
            return kernel.param_grads(P, rows(cbuf, s), rows(cbuf, s + 1), rows(res, s), *dz)

        dP0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(block, 0))
        dP = jax.lax.fori_loop(0, (n + K - 1) // K,
                               lambda j, acc: jax.tree.map(jnp.add, acc, block(j)), dP0)
        return dP, dcarry0, None, dxp_T, None, None

    run.defvjp(run_fwd, run_bwd)
    return run


def flat_rows(a):
    """``[T, *B, X] -> [T*prod(B), X]`` for the after-loop matmuls."""
    return a.reshape(-1, a.shape[-1])


def rows_matmul(a_T, b_T):
    """``Σ_{t,b} a[t,b]ᵀ b[t,b]``: ``[T, *B, X] x [T, *B, Y] -> [X, Y]`` as one matmul."""
    return flat_rows(a_T).T @ flat_rows(b_T)


def rows_sum(a_T):
    return flat_rows(a_T).sum(axis=0)
