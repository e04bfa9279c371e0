"""The training loop as pure functions (purejaxrl style).

    train = make_train(cfg)                       # cfg: one trial (no sweep)
    state, metrics = jax.jit(jax.vmap(train))(keys)   # all seeds in one compiled program

Training runs in *chunks*: ``chunk(state)`` scans ``train.eval_every`` optimiser steps with
``lax.scan`` (batches are sampled on the device from the task) and then evaluates on a fresh
batch. A host loop (``lstmjax.experiment.job``) calls the jitted, vmapped chunk repeatedly to
report progress and checkpoint between chunks; ``train(key)`` scans all chunks in one program.

Per seed, the state carries two flags that freeze it while vmapped siblings continue:

* solved -- the task's ``solved`` criterion held at an evaluation (frozen if ``early_stop``);
* diverged -- an update produced a NaN/Inf loss, gradient or parameter; that update is
  discarded and the seed frozen at its last finite parameters.

Randomness is a pure function of (seed key, step): the training batch of step ``t`` uses
``fold_in(fold_in(key, 1), t)`` and the evaluation after step ``t`` uses
``fold_in(fold_in(key, 2), t)``, so a run resumed from a checkpoint is bit-identical.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lstmjax.fast import stop_at_last_valid
from lstmjax.tasks.base import traced_lengths_supported
from lstmjax.train.model import Model, hashable, make_model
from lstmjax.train.optim import learning_rate_at, make_optimizer, set_learning_rate

__all__ = ["TrainState", "Trainer", "make_trainer", "make_train", "make_task"]


class TrainState(NamedTuple):
    """Per-seed training state (leading seed axis when vmapped)."""

    step: jax.Array  # int32: optimiser steps elapsed (a clock shared by all seeds)
    updates: jax.Array  # int32: steps whose update was applied (stops when frozen)
    params: Any
    opt_state: Any
    key: jax.Array  # uint32[2]: the seed's root key
    solved_step: jax.Array  # int32: first evaluation step where solved, -1 if never
    diverged_step: jax.Array  # int32: step whose update was non-finite, -1 if never


class Trainer(NamedTuple):
    """The pieces of a training run. ``init(key, learning_rate=None) -> TrainState``;
    ``chunk(state) -> (state, metrics)``; ``num_chunks`` chunks cover ``steps``.
    ``chunk_to(state, total)``: ``chunk`` with the step budget ``total`` a runtime value (an
    int32 scalar), so one compiled program serves every budget (a budget raised on resume).

    ``chunk_at(state, length, total)`` (None unless ``task.traced_length``): ``chunk_to`` for
    the task at gap ``length``, a runtime int32 scalar ``<= task.length``, its batches drawn
    into buffers of ``task.seq_len`` steps (``task.sample_at``): one compiled program trains
    every gap up to ``task.length``; a gap's numbers equal its own trainer's to float
    tolerance."""

    init: Callable[..., TrainState]
    chunk: Callable[[TrainState], tuple[TrainState, dict]]
    num_chunks: int
    steps_per_chunk: int
    task: Any
    model: Model
    chunk_to: Callable[..., tuple[TrainState, dict]] | None = None
    chunk_at: Callable[..., tuple[TrainState, dict]] | None = None


def make_task(cfg):
    """The task of a trial config."""
    import lstmjax as lj

    return lj.tasks.make(cfg.task.name, length=cfg.task.length, **hashable(cfg.task.params))


def make_trainer(cfg, batch_sharding=None) -> Trainer:
    """Build the init/chunk functions of one trial (``cfg.sweep`` must be empty).

    ``batch_sharding`` (data parallelism): a sharding for arrays whose leading axis is the
    batch, e.g. ``NamedSharding(mesh, PartitionSpec("batch"))``; every sampled training and
    evaluation batch is constrained to it, so XLA splits the forward and backward passes over
    the mesh and reduces the gradients (the parameters stay replicated). The numbers are the
    one-device program's up to the order of the floating-point reductions."""
    if cfg.sweep:
        raise ValueError(
            "make_train/make_trainer take one trial; expand the sweep first "
            "(lstmjax.experiment.expand(cfg))"
        )
    tc = cfg.train
    task = make_task(cfg)
    model = make_model(cfg.model, task.input_size, task.output_size)
    tx = make_optimizer(tc)
    stochastic = model.net.needs_key  # dropout, zoneout or weight drop: train with a key

    def sample(key, size, fn):
        batch = fn(key, size)
        if batch_sharding is None:
            return batch
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), batch)

    def loss_fn(params, batch, key):
        outputs_BTO = model.apply(params, batch.inputs, batch.lengths, key, not stochastic)
        return task.loss(outputs_BTO, batch)

    def frozen(state):
        solved = state.solved_step >= 0 if tc.early_stop else False
        return solved | (state.diverged_step >= 0)

    def init(key, learning_rate=None) -> TrainState:
        key = _raw_key(key)
        params = model.init(jax.random.fold_in(key, 0))
        opt_state = tx.init(params)
        if learning_rate is not None:
            opt_state = set_learning_rate(opt_state, learning_rate)
        minus_one = jnp.asarray(-1, jnp.int32)
        zero = jnp.asarray(0, jnp.int32)
        return TrainState(zero, zero, params, opt_state, key, minus_one, minus_one)

    def train_step(total, sample_fn, carry, _):
        state, loss_sum, gnorm_sum, n_ok = carry
        active = (state.step < total) & ~frozen(state)
        step_key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.step)
        data_key, dropout_key = jax.random.split(step_key)
        batch = sample(data_key, tc.batch_size, sample_fn)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, dropout_key)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = model.constrain(optax.apply_updates(state.params, updates))
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(params)
        ok = active & finite
        state = state._replace(
            step=state.step + 1,
            updates=state.updates + ok.astype(jnp.int32),
            params=_tree_where(ok, params, state.params),
            opt_state=_tree_where(ok, opt_state, state.opt_state),
            diverged_step=jnp.where(active & ~finite, state.step + 1, state.diverged_step),
        )
        # metrics accumulate in float32 whatever the model's dtype (float64 cells too)
        loss_sum = loss_sum + jnp.where(ok, loss, 0.0).astype(jnp.float32)
        gnorm_sum = gnorm_sum + jnp.where(ok, grad_norm, 0.0).astype(jnp.float32)
        return (state, loss_sum, gnorm_sum, n_ok + ok.astype(jnp.int32)), None

    def chunk_to(state: TrainState, total) -> tuple[TrainState, dict]:
        return _chunk(state, total, task.sample, getattr(task, "sample_eval", task.sample))

    def chunk_at(state: TrainState, length, total) -> tuple[TrainState, dict]:
        length = jnp.asarray(length, jnp.int32)
        with stop_at_last_valid():  # the loops run the gap's steps, not the buffer's
            return _chunk(state, total, lambda k, n: task.sample_at(k, n, length),
                          lambda k, n: task.sample_eval_at(k, n, length))

    def _chunk(state, total, sample_fn, sample_eval_fn):
        total = jnp.asarray(total, jnp.int32)
        was_active = (state.step < total) & ~frozen(state)
        zero = jnp.asarray(0.0, jnp.float32)
        init_carry = (state, zero, zero, jnp.asarray(0, jnp.int32))
        (state, loss_sum, gnorm_sum, n_ok), _ = jax.lax.scan(
            functools.partial(train_step, total, sample_fn), init_carry, None,
            length=tc.eval_every
        )
        eval_step = jnp.minimum(state.step, total)
        eval_key = jax.random.fold_in(jax.random.fold_in(state.key, 2), eval_step)
        batch = sample(eval_key, tc.eval_batch_size, sample_eval_fn)
        outputs_BTO = model.apply(state.params, batch.inputs, batch.lengths, None, True)
        evaluation = dict(task.evaluate(outputs_BTO, batch))
        diverged = state.diverged_step >= 0
        solved = was_active & ~diverged & jnp.asarray(evaluation["solved"], bool)
        first_solve = solved & (state.solved_step < 0)
        state = state._replace(solved_step=jnp.where(first_solve, eval_step, state.solved_step))
        nan = jnp.asarray(jnp.nan, jnp.float32)
        metrics = {
            "step": eval_step,
            "active": was_active,
            "train_loss": jnp.where(n_ok > 0, loss_sum / jnp.maximum(n_ok, 1), nan),
            "grad_norm": jnp.where(n_ok > 0, gnorm_sum / jnp.maximum(n_ok, 1), nan),
            "lr": learning_rate_at(tc, state.opt_state, state.updates),
        }
        for name, value in evaluation.items():
            value = jnp.asarray(value)
            if value.dtype == bool:
                metrics[name] = value & ~diverged
            else:
                metrics[name] = jnp.where(diverged, nan, value.astype(jnp.float32))
        metrics["solved"] = solved
        metrics["diverged"] = diverged
        metrics["updates"] = state.updates
        return state, metrics

    def chunk(state: TrainState) -> tuple[TrainState, dict]:
        return chunk_to(state, tc.steps)

    num_chunks = math.ceil(tc.steps / tc.eval_every)
    shared = getattr(task, "traced_length", False) and traced_lengths_supported()
    return Trainer(init, chunk, num_chunks, tc.eval_every, task, model, chunk_to,
                   chunk_at if shared else None)


def make_train(cfg) -> Callable[..., tuple[TrainState, dict]]:
    """A pure ``train(key, learning_rate=None) -> (final_state, metrics)`` for one trial.

    ``metrics`` holds one entry per chunk (leading axis ``num_chunks``). ``key`` is a
    ``jax.random.PRNGKey``; ``learning_rate`` optionally replaces ``train.learning_rate`` (an
    array, so it can be vmapped)::

        jax.jit(jax.vmap(make_train(cfg)))(jax.vmap(jax.random.PRNGKey)(jnp.arange(8)))
    """
    trainer = make_trainer(cfg)

    def train(key, learning_rate=None):
        state = trainer.init(key, learning_rate)
        return jax.lax.scan(lambda s, _: trainer.chunk(s), state, None, trainer.num_chunks)

    return train


def _raw_key(key) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def _tree_where(cond, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)
