"""Training: the pure train(key), vmapped seeds and learning rates, early stop, divergence,
optimisers, schedules, clipping. Tiny shapes: hidden 8, length 6."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstmjax.experiment.config import TrainConfig, from_dict
from lstmjax.experiment.runner import seeds_in_one_program
from lstmjax.train import loop, make_optimizer, make_schedule, make_train, make_trainer


def _cfg(**train):
    raw = {
        "name": "t",
        "task": {"name": "adding", "length": 6},
        "model": {"cell": "rnn", "hidden_size": 8},
        "train": {"steps": 30, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8,
                  "learning_rate": 1e-2, **train},
    }
    return from_dict(raw)


def _keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


@pytest.fixture(scope="module")
def vmapped_run():
    cfg = _cfg(steps=25)  # the last chunk is partial: steps 10, 20, 25
    train = make_train(cfg)
    return cfg, train, jax.jit(jax.vmap(train))(_keys([0, 1, 2]))


def test_vmapped_seeds_match_each_seed_alone(vmapped_run):
    _, train, (state_v, metrics_v) = vmapped_run
    alone = jax.jit(train)
    for i, seed in enumerate([0, 1, 2]):
        state_1, metrics_1 = alone(jax.random.PRNGKey(seed))
        for a, b in zip(jax.tree.leaves(state_1.params),
                        jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], state_v.params)),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        for name in ("loss", "train_loss", "accuracy"):
            np.testing.assert_allclose(metrics_1[name], metrics_v[name][i], rtol=2e-5, atol=2e-6)
        np.testing.assert_array_equal(metrics_1["solved"], metrics_v["solved"][i])


def test_chunks_cover_the_budget_and_seeds_differ(vmapped_run):
    cfg, _, (state_v, metrics_v) = vmapped_run
    assert make_trainer(cfg).num_chunks == 3
    np.testing.assert_array_equal(metrics_v["step"], [[10, 20, 25]] * 3)
    assert np.all(np.asarray(state_v.updates) == 25)
    assert np.all(np.asarray(state_v.diverged_step) == -1)
    assert not np.allclose(metrics_v["loss"][0], metrics_v["loss"][1])


def test_vmapped_learning_rates_diverge_independently():
    """One program trains lr=1e-3 and lr=1e12 side by side: the second diverges and is frozen;
    the first matches a run configured with lr=1e-3 alone."""
    cfg = _cfg(optimizer="sgd", momentum=0.0, grad_clip=None, steps=40, learning_rate=0.5)
    lrs = jnp.asarray([1e-3, 1e12])
    train = make_train(cfg)
    state, metrics = jax.jit(jax.vmap(train, in_axes=(None, 0)))(jax.random.PRNGKey(0), lrs)

    _, alone = jax.jit(make_train(cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"learning_rate": 1e-3})})))(jax.random.PRNGKey(0))
    np.testing.assert_allclose(alone["loss"], metrics["loss"][0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(metrics["lr"][0], 1e-3, rtol=1e-6)

    diverged_step = np.asarray(state.diverged_step)
    assert diverged_step[0] == -1 and 1 <= diverged_step[1] <= 40
    assert int(state.updates[1]) == diverged_step[1] - 1  # the bad update was discarded
    assert int(state.updates[0]) == 40  # the sibling kept training
    for leaf in jax.tree.leaves(state.params):
        assert np.all(np.isfinite(leaf))  # frozen at the last finite parameters
    assert np.all(np.isfinite(metrics["loss"][0]))
    after = metrics["step"][1] >= diverged_step[1]
    assert np.all(np.isnan(metrics["loss"][1][after])) and np.all(metrics["diverged"][1][after])
    assert not np.any(metrics["solved"][1][after])


@dataclasses.dataclass(frozen=True)
class _CoinFlipTask:
    """The adding task, 'solved' when the first input of the evaluation batch is > 0.9: a
    per-seed, per-step pseudo-random criterion that exercises early stop on some seeds."""

    inner: object

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def evaluate(self, outputs, batch):
        metrics = dict(self.inner.evaluate(outputs, batch))
        metrics["solved"] = batch.inputs[0, 0, 0] > 0.9
        return metrics


def test_early_stop_freezes_solved_seeds_only(monkeypatch):
    real = loop.make_task
    monkeypatch.setattr(loop, "make_task", lambda cfg: _CoinFlipTask(real(cfg)))
    cfg = _cfg(steps=60)
    trainer = make_trainer(cfg)
    seeds = list(range(8))
    state = jax.jit(jax.vmap(trainer.init))(_keys(seeds))
    chunk = jax.jit(seeds_in_one_program(trainer.chunk, vmap=False))  # lax.map over seeds
    history = []
    for _ in range(trainer.num_chunks):
        state, metrics = chunk(state)
        history.append((state, metrics))
    solved_step = np.asarray(state.solved_step)
    assert 0 < np.sum(solved_step > 0) < len(seeds)  # some seeds solved, some did not
    for i in range(len(seeds)):
        if solved_step[i] < 0:
            assert int(state.updates[i]) == 60
            continue
        assert int(state.updates[i]) == solved_step[i]
        k = solved_step[i] // 10 - 1  # the chunk that solved it
        frozen = jax.tree.map(lambda x, i=i: x[i], history[k][0].params)
        final = jax.tree.map(lambda x, i=i: x[i], state.params)
        jax.tree.map(np.testing.assert_array_equal, frozen, final)
        active = np.array([bool(m["active"][i]) for _, m in history])
        assert active[: k + 1].all() and not active[k + 1:].any()


def test_make_train_rejects_a_sweep():
    cfg = from_dict({"task": {"name": "adding", "length": 6},
                     "sweep": {"model.cell": ["rnn", "gru"]}})
    with pytest.raises(ValueError, match="expand the sweep"):
        make_train(cfg)


# ---- optimisers, schedules, clipping ---------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_every_optimizer_and_schedule_steps(optimizer, schedule):
    tc = TrainConfig(optimizer=optimizer, schedule=schedule, steps=100, warmup_steps=5,
                     weight_decay=1e-4)
    tx = make_optimizer(tc)
    params = {"w": jnp.ones(3)}
    opt_state = tx.init(params)
    for _ in range(6):
        updates, opt_state = tx.update({"w": jnp.full(3, 0.5)}, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert np.all(np.isfinite(params["w"])) and np.all(params["w"] < 1.0)


def test_schedule_shapes():
    cos = make_schedule(TrainConfig(schedule="cosine", steps=100, final_lr_fraction=0.1))
    assert float(cos(0)) == pytest.approx(1.0) and float(cos(100)) == pytest.approx(0.1)
    step = make_schedule(TrainConfig(schedule="step", decay_every=10, decay_factor=0.5))
    assert [float(step(t)) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    warm = make_schedule(TrainConfig(warmup_steps=10, steps=100))
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(0.5)
    assert float(warm(50)) == 1.0


def test_elementwise_and_global_norm_clipping():
    grads = {"w": jnp.asarray([10.0, -0.05, 3.0])}
    params = {"w": jnp.zeros(3)}
    tx = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=1.0,
                                    grad_clip=None, grad_clip_value=0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1, 0.05, -0.1], rtol=1e-6)
    tx = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=1.0,
                                    grad_clip=1.0))
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)
