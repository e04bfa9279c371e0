"""Fast paths: exact custom-VJP recurrent loops for the LSTM, LN-LSTM, GRU, Elman and IndRNN
families.

``LSTMCell``, ``LNLSTMCell``, ``GRUCell``, ``ElmanCell`` and ``IndRNNCell`` each override
``recur_scan`` to call their module here (:mod:`.lstm`, :mod:`.ln_lstm`, :mod:`.gru`,
:mod:`.elman`, :mod:`.indrnn`) when its ``applies`` says the
configuration is covered, and ``Cell.reference_recur_scan`` (autodiff through
``lax.scan``) otherwise. This package imports nothing from :mod:`lstmjax.cells`: a cell
passes itself (duck-typed: only its options are read) and its family class.

The fast loop has exactly the reference semantics (resets, masks, ``reset_carry``,
``return_carries``) and is differentiable w.r.t. the recurrent parameters, the
initial and reset carries and the projected inputs ``xp``; its gradients equal autodiff
through the reference loop (to 1e-10 in float64, pinned by ``tests/test_fast.py``).

How it is faster than autodiff through ``lax.scan`` (cuDNN's recipe; the speed-ups
are measured in ``benchmarks/RESULTS.md``):

* the forward loop saves the gate activations, so the backward loop evaluates no
  transcendental; sigmoid/tanh blocks run as one full-width ``tanh`` pass; without a
  gradient (the custom VJP's primal) it saves nothing but the outputs;
* the reverse loop carries only ``dh`` (and ``dc``) and emits the pre-activation
  cotangents ``dz_t``; ``dW_h = Σ_t h_{t-1}ᵀ dz_t`` is one ``[H, T·B] @ [T·B, G·H]``
  matmul after the loop, and ``dxp = dz`` so ``dW_x``/``db`` come from autodiff of
  the hoisted ``project`` as one matmul too.

Covered (else the reference loop runs): LSTM with any gate subset, ``coupled``,
``peepholes``, ``gate_fn``, ``activation``, ``input_/output_activation`` (not
``full_gate_recurrence``, not ``proj_size``); the layer-normalised LSTM; GRU in both forms;
Elman RNN/IRNN and IndRNN with any activation; any batch shape, masks, resets,
``return_carries``; one float dtype shared by ``xp``, the carry and the recurrent params;
T >= 1; subclasses that override ``recur`` or ``initial_carry`` fall back.

Traced inside ``stop_at_last_valid()``, masked loops (``seq_lengths``) stop after the batch's
last valid step (a dynamic trip count), so padding a batch into a longer buffer costs no loop
steps (:mod:`._engine`; the trainer's ``chunk_at`` does this).

Limits: reverse-mode only (``jax.custom_vjp``: ``jax.jvp``/``jacfwd`` through a fast
loop raise a ``TypeError`` naming the switch); for forward-mode pass ``fast=False`` to
``lj.scan``/``lj.RNN`` (or call ``cell.reference_recur_scan(...)``).

XLA:CPU layout rules (the one place they are written down; the code refers here).
Each was measured in ``benchmarks/RESULTS.md``:

1. *2-D projection.* ``Cell.project`` reshapes ``[*B, T, D]`` to rows and runs one
   2-D matmul: the gradient of a 3-D ``[B, T, D] @ [D, G·H]`` takes a slow path
   (5x at B=32, T=200).
2. *Whole arrays in the loop, never slices.* Slicing a fused ``[T, *B, G·H]`` array
   inside a loop (XLA:CPU's fused slice-of-dynamic-slice) is several times slower
   than reading whole ``[T, *B, H]`` arrays: kernels split their inputs once before
   the loop (``prepare``), save residuals per gate, and the GRU splits ``W_h`` into
   per-gate ``[H, H]`` matrices.
3. *One transcendental pass.* One contiguous full-width ``tanh`` is several times
   cheaper than one sigmoid/tanh per sliced gate block (:func:`._act.block_act`).
4. *The bias inside the projection GEMM.* ``Cell.project`` computes ``[x, 1] @ [W_x; b]``:
   adding ``b`` after the GEMM is a separate pass over ``[T, *B, G·H]`` (XLA:CPU does not
   fuse it into the matmul), and its gradient a separate reduction over the same rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax.fast._engine import make_scan, stop_at_last_valid, stops_at_last_valid


def same_float_dtype(*trees) -> bool:
    """True when every leaf is a floating array of one common dtype."""
    leaves = jax.tree.leaves(trees)
    dtypes = {jnp.asarray(x).dtype for x in leaves}
    return len(dtypes) == 1 and jnp.issubdtype(dtypes.pop(), jnp.floating)


def covers(cell, family: type, params, carry, xp_T, keys=("W_h",)) -> bool:
    """The conditions every family shares: ``cell`` keeps ``family``'s own ``recur`` and
    ``initial_carry`` (a subclass that changes them falls back), T >= 1, one float dtype
    shared by the carry, ``xp`` and the recurrent params ``keys``."""
    own = type(cell).recur is family.recur and type(cell).initial_carry is family.initial_carry
    recurrent = [params[k] for k in keys]
    return own and xp_T.shape[0] > 0 and same_float_dtype(recurrent, carry, xp_T)


def run_kernel(kernel, P, carry, xp_T, valid_T=None, reset_T=None, *, unroll=1,
               return_carries=False, reset_carry=None):
    """Run a family kernel through the custom-VJP loop with ``Cell.recur_scan`` semantics
    (``reset_carry``: what a reset restores; default ``carry``)."""
    if xp_T.shape[0] == 0:
        raise ValueError("the fast loop needs at least one time step (got T=0)")
    run = make_scan(kernel, valid_T is not None, reset_T is not None, bool(return_carries),
                    unroll, stops_at_last_valid())
    reset0 = None
    if reset_T is not None:
        reset0 = carry if reset_carry is None else reset_carry
    try:
        return run(P, carry, reset0, xp_T, valid_T, reset_T)
    except TypeError as e:
        if "forward-mode" not in str(e):
            raise
        raise TypeError(
            "jax.jvp/jacfwd through a fast recurrent loop (custom VJP, reverse-mode only): "
            "pass fast=False to lj.scan or lj.RNN for forward-mode autodiff"
        ) from None


__all__ = ["covers", "run_kernel", "same_float_dtype", "stop_at_last_valid"]
