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

Inference saves nothing: called outside ``jax.grad``/``vjp``, ``jax.custom_vjp`` runs the
primal, which stacks only the outputs; the residuals (every step's carry and gate
activations) are stacked only by the forward that a gradient runs (``run_fwd``).
"""

from __future__ import annotations

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


@functools.lru_cache(maxsize=256)
def make_scan(kernel, has_valid: bool, has_reset: bool, return_carries: bool, unroll: int):
    """The custom-VJP loop ``run(P, carry0, reset0, xp_T, valid_T, reset_T)`` for one
    configuration; a reset restores ``reset0`` (None without resets; ``carry0`` for
    ``Cell.recur_scan``'s default).

    Undifferentiated (``jax.custom_vjp`` then runs the primal), the loop is *lean*: it
    stacks only ``ys`` (and the carries if ``return_carries``), never the residuals the
    backward pass needs. Under ``jax.grad``/``vjp`` its forward (``run_fwd``) also saves
    every step's carry and gate activations.
    """

    def forward(P, carry0, reset0, xp_T, valid_T, reset_T, save: bool):
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
        carry_in = _shift_in(carry0, reset0, carries, reset_T if has_reset else None)
        Q = kernel.bwd_consts(P)

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
