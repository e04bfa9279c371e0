"""Initialisers for recurrent cells.

Every initialiser is pure, ``fn(key, shape, dtype, *, hidden_size) -> array``;
``hidden_size`` (the cell's ``H``, keyword-only and always passed) sets
``torch_uniform``'s bound and the width of the ``[rows, H]`` gate blocks that
``orthogonal`` and ``identity`` fill; the others ignore it. Cells look them up by
name through :func:`kernel_init`, so options stay plain strings (hashable,
YAML-friendly); a bias takes only the 1-D-safe ones, :data:`BIAS_INITS`.

* ``torch_uniform`` — U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for every
  ``nn.RNN/LSTM/GRU`` weight and bias, so native and imported models start alike.
* ``orthogonal`` — each ``[rows, H]`` gate block of a ``[rows, G*H]`` kernel is an
  independent random (semi-)orthogonal matrix (Saxe et al. 2014).
* ``identity`` — ``I`` (``[rows, H]``) in every gate block (IRNN, Le et al. 2015).
* ``glorot_uniform`` / ``lecun_normal`` / ``normal`` (std 1e-3) / ``zeros`` — over
  the whole array.
* :func:`chrono_bias` — ``chrono_bias(key, hidden_size, t_max)``: an ``[H]`` bias
  b ~ log U[1, T_max - 1] (Tallec & Ollivier 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def torch_uniform(key, shape, dtype=jnp.float32, *, hidden_size: int):
    """U(-1/sqrt(hidden_size), +1/sqrt(hidden_size)), as ``torch.nn.LSTM.reset_parameters``."""
    bound = 1.0 / math.sqrt(hidden_size)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


def _blocks(shape, hidden_size):
    """Number of [rows, H] gate blocks in a kernel of ``shape`` = [rows, G*H]."""
    rows, cols = shape
    if cols % hidden_size:
        raise ValueError(f"kernel width {cols} is not a multiple of hidden_size {hidden_size}")
    return cols // hidden_size


def orthogonal(key, shape, dtype=jnp.float32, *, hidden_size: int, scale: float = 1.0):
    """Per-gate orthogonal blocks: ``W[:, k*H:(k+1)*H]`` is (semi-)orthogonal for every gate k."""
    g = _blocks(shape, hidden_size)
    ortho = jax.nn.initializers.orthogonal(scale)
    keys = jax.random.split(key, g)
    blocks = [ortho(k, (shape[0], hidden_size), jnp.float32) for k in keys]
    return jnp.concatenate(blocks, axis=1).astype(dtype)


def identity(key, shape, dtype=jnp.float32, *, hidden_size: int, scale: float = 1.0):
    """``scale * I`` in every ``[H, H]`` gate block (IRNN, Le et al. 2015). ``key`` is unused."""
    del key
    g = _blocks(shape, hidden_size)
    eye = scale * jnp.eye(shape[0], hidden_size, dtype=jnp.float32)
    return jnp.tile(eye, (1, g)).astype(dtype)


def glorot_uniform(key, shape, dtype=jnp.float32, *, hidden_size: int):
    """Glorot/Xavier uniform over the whole fused kernel."""
    del hidden_size
    return jax.nn.initializers.glorot_uniform()(key, shape, jnp.float32).astype(dtype)


def lecun_normal(key, shape, dtype=jnp.float32, *, hidden_size: int):
    """LeCun normal (Flax's default input kernel)."""
    del hidden_size
    return jax.nn.initializers.lecun_normal()(key, shape, jnp.float32).astype(dtype)


def normal(key, shape, dtype=jnp.float32, *, hidden_size: int, std: float = 1e-3):
    """N(0, std^2); std 1e-3 is Le et al.'s IRNN input init."""
    del hidden_size
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


def zeros(key, shape, dtype=jnp.float32, *, hidden_size: int):
    """All zeros."""
    del key, hidden_size
    return jnp.zeros(shape, dtype)


KERNEL_INITS: dict[str, Initializer] = {
    "torch_uniform": torch_uniform,
    "orthogonal": orthogonal,
    "identity": identity,
    "glorot_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "normal": normal,
    "zeros": zeros,
}


# Initialisers that make sense for a 1-D bias (the others need a [rows, G*H] kernel).
BIAS_INITS = ("torch_uniform", "normal", "zeros")


def kernel_init(name: str) -> Initializer:
    """Look up an initialiser by name; unknown names give a one-line error listing the choices."""
    try:
        return KERNEL_INITS[name]
    except KeyError:
        raise ValueError(
            f"unknown initialiser {name!r}; choose one of {sorted(KERNEL_INITS)}"
        ) from None


def chrono_bias(key, hidden_size: int, t_max: float, dtype=jnp.float32):
    """Chrono init (Tallec & Ollivier 2018): ``b ~ log(U[1, t_max - 1])``, shape ``[H]``.

    For an LSTM set ``b_f = b`` and ``b_i = -b``; for a GRU in the PyTorch form
    (``h' = (1 - z) * n + z * h``) set the update-gate bias ``b_z = b`` so that
    z starts near 1 (keep) with characteristic times spread over [1, t_max].
    """
    if not t_max > 2:
        raise ValueError(f"chrono t_max must be > 2 (got {t_max}); use the longest gap expected")
    u = jax.random.uniform(key, (hidden_size,), jnp.float32, 1.0, t_max - 1.0)
    return jnp.log(u).astype(dtype)
