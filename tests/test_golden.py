"""Golden numbers: two training chunks of a small LSTM on adding (float32, CPU) pinned to values
recorded on 2026-12-01 (jax 0.10.x, XLA:CPU), so a refactor that silently changes training --
initialisation, sampling, the loss, the optimiser, the fast path -- is caught.

If a change is *meant* to move these numbers (a new default, a different RNG stream), rerun the
body of ``test_two_training_chunks_match_the_recorded_numbers`` with ``print`` and replace
GOLDEN, and say in the commit message why training changed. A jax/XLA upgrade may move the
last digits: the tolerance (rtol 2e-4) allows that, not a behavioural change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.experiment import from_dict
from lstmjax.train import make_trainer

CONFIG = {
    "name": "golden",
    "task": {"name": "adding", "length": 10},
    "model": {"cell": "lstm", "hidden_size": 8, "options": {"forget_bias": 1.0}},
    "train": {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 8, "steps": 40,
              "eval_every": 20, "eval_batch_size": 16, "seeds": 1},
}
GOLDEN = [  # per chunk: train_loss, grad_norm, eval loss, accuracy
    (0.6545170545578003, 1.793058156967163, 0.3620070517063141, 0.0),
    (0.1715911328792572, 0.4848868250846863, 0.15812359750270844, 0.125),
]
GOLDEN_ABS_PARAM_SUM = 77.80635070800781  # sum of |p| over every parameter after 40 steps


def test_two_training_chunks_match_the_recorded_numbers():
    trainer = make_trainer(from_dict(CONFIG))
    state = trainer.init(jax.random.PRNGKey(0))
    chunk = jax.jit(trainer.chunk)
    got = []
    for _ in GOLDEN:
        state, m = chunk(state)
        got.append(tuple(float(m[k]) for k in ("train_loss", "grad_norm", "loss", "accuracy")))
    np.testing.assert_allclose(np.array(got), np.array(GOLDEN), rtol=2e-4, atol=1e-6)
    abs_sum = float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(state.params)))
    np.testing.assert_allclose(abs_sum, GOLDEN_ABS_PARAM_SUM, rtol=2e-4)
