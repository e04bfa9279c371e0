"""Elementwise activations with derivatives written in terms of their *outputs*.

The fast backward passes save activations ``a = f(x)`` in the forward loop and
never recompute a transcendental: ``f'(x)`` is a polynomial in ``a`` for every
activation the cells offer (the same values autodiff gives, including its choice
of 0 for relu/relu6 at the kinks).

``block_act`` applies one activation per ``H``-wide block of a fused ``[.., G*H]``
pre-activation. When every block is ``sigmoid`` or ``tanh`` it runs a single
full-width ``tanh`` (``σ(x) = ½·tanh(x/2) + ½``; why: rule 3 in :mod:`lstmjax.fast`).
"""

from __future__ import annotations

import jax.numpy as jnp

from lstmjax.activations import ACTIVATIONS, GATE_FNS

FNS = {**ACTIVATIONS, **GATE_FNS}


def apply(kind: str, x):
    return FNS[kind](x)


def deriv(kind: str, a):
    """``f'(x)`` from ``a = f(x)``."""
    if kind == "tanh":
        return 1.0 - a * a
    if kind == "sigmoid":
        return a - a * a
    if kind == "identity":
        return jnp.ones_like(a)
    if kind == "relu":
        return (a > 0).astype(a.dtype)
    if kind == "hard_sigmoid":  # relu6(x + 3) / 6, with autodiff's zero slope at the kinks
        return jnp.where((a > 0) & (a < 1), jnp.asarray(1 / 6, a.dtype), jnp.zeros_like(a))
    if kind == "softsign":  # x / (1 + |x|):  f' = 1 / (1 + |x|)^2 = (1 - |a|)^2
        m = 1.0 - jnp.abs(a)
        return m * m
    raise ValueError(f"no output-form derivative for activation {kind!r}")


def mul_deriv(kind: str, d, a):
    """``d * f'(x)`` from ``a = f(x)`` (skips the multiply for identity)."""
    return d if kind == "identity" else d * deriv(kind, a)


def _tiled(values, H: int, dtype):
    return jnp.repeat(jnp.asarray(values, dtype), H)


def block_act(kinds: tuple[str, ...], H: int, pre):
    """Apply ``kinds[k]`` to block k (width ``H``) of ``pre [.., len(kinds)*H]``."""
    if len(set(kinds)) == 1:
        return apply(kinds[0], pre)
    if set(kinds) <= {"sigmoid", "tanh"}:
        half = [0.5 if k == "sigmoid" else 1.0 for k in kinds]
        shift = [0.5 if k == "sigmoid" else 0.0 for k in kinds]
        s = _tiled(half, H, pre.dtype)
        return jnp.tanh(pre * s) * s + _tiled(shift, H, pre.dtype)
    blocks = [apply(k, pre[..., j * H : (j + 1) * H]) for j, k in enumerate(kinds)]
    return jnp.concatenate(blocks, axis=-1)
