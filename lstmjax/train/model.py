"""The model trained on every task: ``lj.RNN`` -> per-step linear readout.

    outputs_BTO = h_BTH @ W_HO + b_O,   (h_BTH, _) = RNN(x_BTD, seq_lengths=lengths_B)

With ``model.compute_dtype: bfloat16`` (mixed precision) the parameters stay float32 -- the
optimiser updates them, gradients arrive in float32 -- while the RNN runs on bfloat16 copies
cast inside the step (its carries and activations are bfloat16); the readout and the loss
are float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._util import hashable

__all__ = ["Model", "make_model", "hashable"]


class Model(NamedTuple):
    """``init(key) -> params``; ``apply(params, inputs_BTD, lengths_B, key, deterministic)``."""

    init: Callable[[jax.Array], Any]
    apply: Callable[..., jax.Array]
    net: Any

    def constrain(self, params):
        """``params`` with the network's constraints applied (``lj.RNN.constrain``: e.g.
        IndRNN's ``|u| <= recurrent_max``); the training loop calls it after every update."""
        return {**params, "rnn": self.net.constrain(params["rnn"])}


def make_model(model_cfg, input_size: int, output_size: int) -> Model:
    """Build the network described by a :class:`ModelConfig` for a task's input/output sizes.

    ``model_cfg.options`` go to the cell as they are: an option the cell does not take, or a bad
    value, raises. (A sweep's shared options block is filtered per cell once, when the sweep is
    expanded: :func:`lstmjax.experiment.expand`.)
    """
    import lstmjax as lj

    options = hashable(dict(model_cfg.options))
    cell = lj.cells.make(model_cfg.cell, hidden_size=model_cfg.hidden_size, **options)
    net = _rnn(lj, cell, model_cfg)
    compute_dtype = getattr(model_cfg, "compute_dtype", "float32")
    # the same network with bfloat16 cells (carries, loop and projection in that dtype); it
    # runs on the float32 params cast at the start of every apply
    compute_net = (None if compute_dtype == "float32"
                   else _rnn(lj, dataclasses.replace(cell, dtype=compute_dtype), model_cfg))
    width = net.output_size

    def init(key):
        rnn_key, out_key = jax.random.split(key)
        W_HO = jax.random.normal(out_key, (width, output_size), jnp.float32) / jnp.sqrt(width)
        return {
            "rnn": net.init(rnn_key, input_size),
            "readout": {"W_HO": W_HO, "b_O": jnp.zeros((output_size,), jnp.float32)},
        }

    def apply(params, inputs_BTD, lengths_B=None, key=None, deterministic=True):
        rnn, p = net, params["rnn"]
        if compute_net is not None:
            rnn, p = compute_net, _cast_floats(p, jnp.dtype(compute_dtype))
        h_BTH, _ = rnn.apply(
            p, inputs_BTD, seq_lengths=lengths_B, key=key, deterministic=deterministic
        )
        readout = params["readout"]
        return h_BTH.astype(jnp.float32) @ readout["W_HO"] + readout["b_O"]

    return Model(init, apply, net)


def _cast_floats(tree, dtype):
    """Every floating leaf of ``tree`` as ``dtype`` (integer leaves as they are)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _rnn(lj, cell, model_cfg):
    return lj.RNN(
        cell,
        num_layers=model_cfg.num_layers,
        bidirectional=model_cfg.bidirectional,
        dropout=model_cfg.dropout,
        recurrent_dropout=model_cfg.recurrent_dropout,
        proj_size=model_cfg.proj_size,
        residual=model_cfg.residual,
        zoneout=model_cfg.zoneout,
        weight_drop=model_cfg.weight_drop,
        learn_initial_carry=model_cfg.learn_initial_carry,
        remat=model_cfg.remat,
    )
