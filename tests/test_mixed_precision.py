"""``model.compute_dtype: bfloat16``: float32 parameters and optimiser, the RNN in bfloat16.

Oracles: the float64 model (the same parameters and data under ``enable_x64``) for the
gradients, within bfloat16's precision (8 mantissa bits, ~0.4 % per rounding); the compiled
program for where bfloat16 is actually used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax.train import make_trainer
from lstmjax.train.model import make_model


def _cfg(cell="lstm", compute_dtype="bfloat16", **model):
    return lj.experiment.from_dict({
        "name": "mp", "task": {"name": "adding", "length": 12},
        "model": {"cell": cell, "hidden_size": 8, "compute_dtype": compute_dtype, **model},
        "train": {"batch_size": 4, "steps": 4, "eval_every": 2, "eval_batch_size": 8},
    })


def _loss(model):
    return lambda p, x: jnp.mean(jnp.square(model.apply(p, x)))


# the LSTM (custom-VJP fast path) and minGRU (no recurrent matmul): the cast is the model's,
# the same for every cell
@pytest.mark.parametrize("cell", ["lstm", "mingru"])
def test_gradients_are_float32_and_match_float64_to_bfloat16_precision(cell, x64):
    cfg = _cfg(cell)
    model = make_model(cfg.model, 2, 1)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 12, 2), jnp.float32)
    loss, grads = jax.jit(jax.value_and_grad(_loss(model)))(params, x)
    assert {str(a.dtype) for a in jax.tree.leaves(grads)} == {"float32"}
    exact = make_model(_cfg(cell, "float32", options={"dtype": "float64"}).model, 2, 1)
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    loss64, grads64 = jax.jit(jax.value_and_grad(_loss(exact)))(p64, jnp.asarray(x, jnp.float64))
    assert loss64.dtype == jnp.float64
    loss64 = float(loss64)
    assert abs(float(loss) - loss64) <= 3e-2 * abs(loss64)
    for g, g64 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads64), strict=True):
        err = np.linalg.norm(np.asarray(g, np.float64) - g64) / (np.linalg.norm(g64) + 1e-30)
        assert err < 5e-2, err


def test_the_recurrence_runs_in_bfloat16_and_float32_does_not():
    x = jnp.ones((4, 12, 2), jnp.float32)
    texts = {}
    for dt in ("float32", "bfloat16"):
        model = make_model(_cfg("lstm", dt).model, 2, 1)
        params = model.init(jax.random.key(0))
        texts[dt] = jax.jit(jax.grad(_loss(model))).lower(params, x).as_text()
    # the recurrent matmul h_{t-1} @ W_h inside the loop: [4, 8] x [8, 32]
    assert "bf16" not in texts["float32"]
    assert "tensor<4x8xbf16>" in texts["bfloat16"] and "tensor<8x32xbf16>" in texts["bfloat16"]


def test_training_keeps_float32_parameters_and_optimizer_state():
    trainer = make_trainer(_cfg("lstm"))
    state, records = jax.jit(trainer.chunk)(trainer.init(jax.random.key(0)))
    dtypes = {str(a.dtype) for a in jax.tree.leaves((state.params, state.opt_state))
              if jnp.issubdtype(a.dtype, jnp.floating)}
    assert dtypes == {"float32"}
    assert np.isfinite(np.asarray(records["loss"])).all()


def test_unknown_compute_dtype_is_a_one_line_error():
    with pytest.raises(lj.experiment.ConfigError) as e:
        _cfg(compute_dtype="float16")
    msg = str(e.value)
    assert "compute_dtype" in msg and "float16" in msg and "\n" not in msg.strip()


def test_compute_dtype_with_non_float32_parameters_is_a_one_line_error():
    with pytest.raises(lj.experiment.ConfigError) as e:
        _cfg(options={"dtype": "float64"})
    msg = str(e.value)
    assert "compute_dtype" in msg and "float64" in msg and "\n" not in msg.strip()
