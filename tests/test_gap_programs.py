"""One training program for many gaps (issue 26, item 2): tasks draw a traced length into a
fixed buffer exactly as they draw that length alone, the masked fast loops stop at the last
valid step (also under vmap), and a frontier compiles one training chunk per cell whose
probes train as they would in their own programs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tolerance import assert_same_math

import lstmjax as lj
from lstmjax.experiment import from_dict
from lstmjax.experiment.gap_programs import buffer_length
from lstmjax.experiment.job import compile_job
from lstmjax.experiment.schedule import Job
from lstmjax.experiment.search.frontier import probe
from lstmjax.experiment.sweep import expand
from lstmjax.fast import stop_at_last_valid


@pytest.mark.parametrize("name, buffer, lengths", [
    ("adding", 40, [2, 3, 17, 39, 40]),
    ("adding_1997", 40, [22, 31, 40]),
    ("multiplication", 40, [22, 40]),
])
def test_sample_at_traced_length_equals_the_static_draw_on_the_valid_region(name, buffer,
                                                                             lengths):
    """The oracle is the task built at each length (``jax.random.uniform``/``randint`` at that
    shape): the traced draw agrees bit for bit where it is valid and is zero past it."""
    task = lj.tasks.make(name, length=buffer)
    draw = jax.jit(lambda key, n: task.sample_at(key, 6, n))
    for n in lengths:
        key = jax.random.PRNGKey(100 + n)
        got = draw(key, n)
        alone = dataclasses.replace(task, length=n)
        want = alone.sample(key, 6)
        S = alone.seq_len
        np.testing.assert_array_equal(got.lengths, want.lengths)
        for g, w in [(got.inputs, want.inputs), (got.targets, want.targets),
                     (got.mask, want.mask)]:
            g = np.asarray(g)
            assert g.shape[1] == task.seq_len
            np.testing.assert_array_equal(g[:, :S], np.asarray(w))
            assert not g[:, S:].any()


def test_a_task_without_traced_lengths_refuses_sample_at():
    task = lj.tasks.make("copy", length=10)
    assert not task.traced_length
    with pytest.raises(NotImplementedError, match="copy: sampling at a traced length"):
        task.sample_at(jax.random.PRNGKey(0), 2, 5)


@pytest.mark.parametrize("name", ["lstm", "peephole", "cifg", "gru", "ln_lstm", "rnn",
                                  "indrnn"])
def test_loop_stopping_at_the_last_valid_step_equals_the_reference_loop(name, x64):
    """Inside ``stop_at_last_valid`` the masked fast loop (dynamic trip count, parameter
    gradients summed over blocks of steps) has the reference loop's outputs, final carry and
    gradients (autodiff through ``lax.scan`` over every step: an independent oracle) to 1e-10
    in float64: lengths 0, partial and full, a buffer whose tail no sequence reaches, a trip
    count over several gradient blocks."""
    cell = dataclasses.replace(lj.cells.make(name, 5), dtype="float64")
    params = cell.init(jax.random.PRNGKey(0), 3)
    T = 80  # > 2 blocks of fast._engine._GRAD_ROWS steps
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, T, 3), jnp.float64)
    lengths = jnp.asarray([0, 70, 33, 1])  # the last 10 steps: padding for every sequence

    def loss(p, fast):
        ys, carry = lj.scan(cell, p, xs, seq_lengths=lengths, fast=fast)
        weights = jnp.cos(jnp.arange(T, dtype=jnp.float64))[:, None]
        return jnp.sum(ys * weights) + sum(jnp.sum(c ** 2) for c in jax.tree.leaves(carry))

    with stop_at_last_valid():
        got = jax.jit(jax.value_and_grad(lambda p: loss(p, True)))(params)
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss(p, True)))(params))
    want = jax.value_and_grad(lambda p: loss(p, False))(params)
    assert "while" in jaxpr and " scan[" not in jaxpr  # the stopping loops ran, not lax.scan
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_masked_fast_loop_under_vmap_equals_each_example_alone(name):
    """Vmapped sequences of different lengths (a batched trip count) run to the longest; each
    one's outputs and gradients equal its own unmapped, unpadded loop (float tolerance)."""
    cell = lj.cells.make(name, 5)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 9, 3))  # [vmapped, B, T, D]
    lengths = jnp.asarray([[9, 2], [4, 4], [1, 7]])

    def loss(p, x, n):
        ys, _ = lj.scan(cell, p, x, seq_lengths=n)
        return jnp.sum(ys ** 2 * jnp.arange(1, ys.shape[1] + 1)[:, None]), ys

    with stop_at_last_valid():
        got = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True), in_axes=(None, 0, 0)))(
            params, xs, lengths)
    for k in range(3):
        T = int(lengths[k].max())
        want = jax.value_and_grad(loss, has_aux=True)(params, xs[k, :, :T], lengths[k])
        (value, ys), grads = jax.tree.map(lambda a, k=k: a[k], got)
        (w_value, w_ys), w_grads = want
        assert_same_math((value, ys[:, :T], grads), (w_value, w_ys, w_grads))
        assert not np.asarray(ys[:, T:]).any()


def _frontier_cfg(**train):
    return from_dict({
        "name": "gaps",
        "task": {"name": "adding", "length": 4},
        "model": {"cell": "lstm", "hidden_size": 4},
        "train": {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 4, "steps": 20,
                  "eval_every": 5, "eval_batch_size": 4, "seeds": 2, **train},
        "sweep": {"variant": [{"name": c, "model.cell": c} for c in ("rnn", "lstm", "gru")]},
        "frontier": {"key": "task.length", "start": 4, "max": 32, "factor": 2},
    })


class _ChunkCompiles:
    """Counts XLA compiles of training-chunk programs (by the compiled function's name)."""

    def __init__(self):
        self.names: list[str] = []

    def _on(self, event, seconds, **kw):
        if event == "/jax/core/compile/backend_compile_duration" and "chunk" in kw.get(
                "fun_name", ""):
            self.names.append(kw["fun_name"])

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._on)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._on)


def test_frontier_compiles_two_training_programs_per_cell_by_default():
    """Six probes of each of three cells, compiled as a run compiles them (one cache shared by
    its jobs), with the default frontier settings: two chunk programs per cell (one per
    buffer), not one per gap."""
    cfg = _frontier_cfg()
    variants = expand(cfg)
    with _ChunkCompiles() as counted:
        for v in variants:
            for i, gap in enumerate([4, 8, 16, 32, 12, 24]):
                compile_job(Job((probe(cfg, cfg.frontier, v, gap, i),)), cache)
    # buffers 32, 8, 2, 1 (frontier.buffer_ratio 4): gaps 4 and 8 share the 8-step program,
    # 12 to 32 the 32-step one
    assert len(counted.names) <= 2 * len(variants), counted.names
    assert len(counted.names) == 2 * len(variants)


def test_a_gap_trains_in_the_smallest_buffer_that_holds_it():
    """Buffers max, ceil(max / r), ceil(max / r**2), ... down to 1; a gap takes the smallest
    that holds it, whatever other gaps the frontier probes; ``buffer_ratio: null`` keeps one
    buffer (max); without ``shared_program`` a probe has its own program."""
    from lstmjax.experiment.gap_programs import buffers

    assert buffers(160, 4) == [160, 40, 10, 3, 1]
    assert buffers(100, 3) == [100, 34, 12, 4, 2, 1]
    assert buffers(160, None) == [160]
    cfg = _frontier_cfg()

    def buffer(gap, **frontier):
        c = cfg.model_copy(update={"frontier": cfg.frontier.model_copy(update=frontier)})
        variant = next(v for v in expand(c) if v.variant == "gru")
        return buffer_length(probe(c, c.frontier, variant, gap, 0).cfg)

    assert [buffer(g) for g in (2, 3, 8, 9, 31, 32, 40)] == [2, 8, 8, 32, 32, 32, 40]
    assert [buffer(g, buffer_ratio=None) for g in (2, 9, 32)] == [32, 32, 32]
    assert [buffer(g, buffer_ratio=2.0) for g in (3, 5, 9, 17)] == [4, 8, 16, 32]
    assert buffer(9, shared_program=False) is None


cache: dict = {}  # shared by the tests of this file, as a run's jobs share theirs


def test_a_probe_trains_the_same_in_the_shared_program_as_in_its_own():
    """A probe at gap 12 run by the frontier's program (buffer 32) and by a program compiled
    for gap 12 alone: same batches (the draws are a function of seed, step and gap), same
    arithmetic on the valid steps; the padded steps add exact zeros to sums that may associate
    differently, so the numbers agree to float32 tolerance (64 eps relative, compounded over
    10 Adam steps on a 4-unit LSTM: well below any real difference), not bit for bit."""
    cfg = _frontier_cfg()
    variant = next(v for v in expand(cfg) if v.variant == "lstm")
    trial = probe(cfg, cfg.frontier, variant, 12, 0)
    alone = dataclasses.replace(trial, cfg=trial.cfg.model_copy(update={"frontier": None}))
    assert buffer_length(trial.cfg) == 32 and buffer_length(alone.cfg) is None
    results = []
    for t in (trial, alone):
        own_cache: dict = {}
        compiled = compile_job(Job((t,)), own_cache)
        # the frontier's probe runs (and caches) the buffer's program; the other its own
        assert any(k.startswith('["chunk"') for k in own_cache) == (t is trial)
        state = compiled.init(*compiled.init_args)
        metrics = []
        for _ in range(2):
            state, m = compiled.chunk(state, np.int32(t.cfg.train.steps))
            metrics.append(m)
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    assert_same_math(results[0], results[1], ulps=256)
    losses = [np.asarray([m["train_loss"] for m in r[1]]) for r in results]
    assert np.isfinite(losses[0]).all() and (losses[0][1] != losses[0][0]).all()  # it trained


def test_a_probe_s_diagnostics_from_the_shared_program_equal_its_own():
    """A frontier's diagnostics program is shared by its gaps whether or not its training
    programs are (``shared_program: false`` here): gap 6 and gap 12 run the one program
    compiled for ``frontier.max`` (32; the second gap compiles nothing), and each probe's lines
    equal those of a program compiled for that gap alone -- the same lags, gains and gate
    statistics to float tolerance (the padded steps are masked), the same dependency lags. A
    task that cannot draw traced lengths keeps a program per gap."""
    from lstmjax.experiment.compile_cache import CompileMeter
    from lstmjax.experiment.diagnose import Diagnoser
    from lstmjax.experiment.gap_programs import shared_diagnoser
    from lstmjax.train import make_trainer

    cfg = _frontier_cfg()
    cfg = cfg.model_copy(update={"frontier": cfg.frontier.model_copy(
        update={"shared_program": False}), "diagnostics": from_dict({
        "name": "d", "task": {"name": "adding", "length": 4},
        "diagnostics": {"every": 5, "batch_size": 4}}).diagnostics})
    variant = next(v for v in expand(cfg) if v.variant == "lstm")
    shared_cache: dict = {}
    for i, gap in enumerate([6, 12]):
        trial = probe(cfg, cfg.frontier, variant, gap, i)
        compiled = compile_job(Job((trial,)), cache)
        state = compiled.init(*compiled.init_args)
        with CompileMeter() as meter:
            got = shared_diagnoser(trial.cfg, shared_cache).lines(state, 0)
        if i == 1:
            assert meter.requests == 0  # the gap-6 program, called with gap 12
        want = Diagnoser(make_trainer(trial.cfg), trial.cfg).lines(state, 0)
        assert [(d["step"], d["seed"]) for d in got] == [(d["step"], d["seed"]) for d in want]
        for g, w in zip(got, want, strict=True):
            assert g["dependency_lags"] == w["dependency_lags"]
            assert g["gradient_flow"]["lag"] == w["gradient_flow"]["lag"]
            assert len(w["gradient_flow"]["lag"]) >= gap
            gains = [np.asarray([np.nan if v is None else v for v in d["gradient_flow"][
                "log10_gain"]]) for d in (g, w)]
            np.testing.assert_allclose(gains[0], gains[1], rtol=1e-4, atol=1e-4)
            flat = [jax.tree.leaves(d["gates"]) for d in (g, w)]
            assert len(flat[0]) == len(flat[1]) > 0
            for a, b in zip(*flat, strict=True):
                if isinstance(b, str):
                    assert a == b
                else:
                    assert a == pytest.approx(b, rel=1e-4, abs=1e-6, nan_ok=True)
    other = trial.cfg.model_copy(update={"task": trial.cfg.task.model_copy(
        update={"name": "copy"})})
    assert shared_diagnoser(other, shared_cache) is None
