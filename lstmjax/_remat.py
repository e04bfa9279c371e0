"""Bounded-memory training: run a scan as checkpointed segments of K steps (``remat=K``).

``lj.scan(cell, params, xs, remat=K)`` splits the T steps into ``T // K`` segments of K
steps plus, when K does not divide T, one last segment of ``T % K`` steps. Each segment,
``project`` and loop together, is a ``jax.checkpoint``: the forward pass keeps only the
carry entering each segment, and the backward pass re-runs one segment at a time (the
projection, then the cell's loop -- a fast path's custom VJP saves its residuals for
those K steps only) and back-propagates through it. Saved for the backward pass::

    without remat:  xp [T, *B, P] + the loop's residuals (fast LSTM: 6 x [T, *B, H])
    with remat=K:   T/K carries [*B, H_c] (+ K steps' residuals while a segment is redone)

at the price of one more forward pass. Results are those of the plain scan: every step
computes the same values (a reset restores the scan's initial carry in every segment,
through ``recur_scan``'s ``reset_carry``), so gradients agree to rounding (1e-10 in float64,
``tests/test_remat.py``). ``remat="auto"`` takes ``K = round(sqrt(T))``, which minimises
``T/K + K``.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

__all__ = ["check_remat", "segment_length", "segmented"]


def check_remat(remat, who: str):
    """``remat`` as given if it is ``None``, ``"auto"`` or an int >= 1; else a one-line error."""
    if remat is None or (isinstance(remat, str) and remat == "auto"):
        return remat
    if isinstance(remat, bool) or not isinstance(remat, numbers.Integral) or remat < 1:
        raise ValueError(
            f"{who}: remat={remat!r} is not valid; give the steps per checkpointed segment "
            f"(an integer >= 1), 'auto' (round(sqrt(T))) or None (off)"
        )
    return int(remat)


def segment_length(remat, T: int) -> int:
    """K for ``T`` steps: ``round(sqrt(T))`` for ``"auto"``, at most T, at least 1."""
    K = max(1, round(math.sqrt(T))) if remat == "auto" else remat
    return max(1, min(K, T))


def _segment(project, loop, unroll: int, return_carries: bool):
    """One segment: ``(params, carry, reset_carry, xs, valid, reset) -> loop's output``."""

    def run(params, carry, reset_carry, xs_K, valid_K, reset_K):
        kw = {} if reset_K is None else {"reset_carry": reset_carry}
        return loop(params, carry, project(params, xs_K), valid_K, reset_K, unroll=unroll,
                    return_carries=return_carries, **kw)

    return run


def segmented(project, loop, K: int, params, carry, xs_T, valid_T=None, reset_T=None, *,
              unroll: int = 1, return_carries: bool = False):
    """``loop(params, carry, project(params, xs_T), valid_T, reset_T, ...)`` in segments of K.

    Args:
      project: ``(params, xs [K, *B, D]) -> xp [K, *B, P]`` (``cell.project``).
      loop: a time-major loop with ``Cell.recur_scan``'s signature (including
        ``reset_carry``, which is passed only when there are resets).
      carry: the initial carry, already in the loop's dtypes (``Cell.loop_carry``); a
        reset restores it in every segment.
      xs_T: ``[T, *B, D]``; ``valid_T``/``reset_T``: ``[T, *B]`` bools or None.

    Returns ``loop``'s ``(final, ys [T, *B, H_out])`` (plus ``carries`` if ``return_carries``).
    """
    T = xs_T.shape[0]
    n, r = divmod(T, K)
    seq = (xs_T, valid_T, reset_T)
    reset_carry = carry if reset_T is not None else None
    run = _segment(project, loop, unroll, return_carries)
    outs = []
    if n:
        # Inside a scan the checkpointed body needs no CSE barrier (jax.checkpoint docs).
        seg = jax.checkpoint(run, prevent_cse=False)

        def body(c, inputs):
            out = seg(params, c, reset_carry, *inputs)
            return out[0], out[1:]

        head = jax.tree.map(lambda a: a[: n * K].reshape(n, K, *a.shape[1:]), seq)
        carry, stacked = jax.lax.scan(body, carry, head)
        outs.append(jax.tree.map(lambda a: a.reshape(n * K, *a.shape[2:]), stacked))
    if r:
        tail = jax.tree.map(lambda a: a[n * K :], seq)
        out = jax.checkpoint(run)(params, carry, reset_carry, *tail)
        carry = out[0]
        outs.append(out[1:])
    rest = outs[0] if len(outs) == 1 else jax.tree.map(
        lambda a, b: jnp.concatenate([a, b], axis=0), *outs)
    return (carry, *rest)
