"""The activation tables cells and fast loops look names up in (a leaf module).

``ACTIVATIONS`` serves the ``activation`` option (candidate and output squashing),
``GATE_FNS`` the ``gate_fn`` option. Both :mod:`lstmjax.cells` and :mod:`lstmjax.fast`
import them from here, so neither package imports the other for them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "identity": lambda x: x,
    "softsign": jax.nn.soft_sign,
    "sigmoid": jax.nn.sigmoid,
}
GATE_FNS = {
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
}

__all__ = ["ACTIVATIONS", "GATE_FNS"]
