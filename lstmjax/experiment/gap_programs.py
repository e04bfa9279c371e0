"""One compiled training program for many gaps.

A frontier over ``task.length`` trains the same model on the same task family at many gaps.
With ``frontier.shared_program: true``, where the task can draw a *traced* length into a
fixed buffer (``task.traced_length``: :meth:`lstmjax.tasks.base.Task.sample_at`), every
probe of a variant runs the one chunk program compiled for the frontier's largest gap,
``frontier.max`` (:attr:`lstmjax.train.Trainer.chunk_at`, the gap a runtime argument),
instead of a program per gap, and its diagnostics (:func:`shared_diagnoser`) run one program
too. The masked fast loops stop at the batch's last valid step
(:mod:`lstmjax.fast`), so a short gap runs none of the buffer's padded steps; it still pays
for the buffer-sized work outside the loops (the hoisted projection, the loops' zeroed
buffers, the readout): 1.3-1.7x a gap's own step time in a buffer 2-8x longer, 3-8.5x in
one 4-32x longer (``benchmarks/RESULTS.md``). That is why it is not the default yet.

A probe's draws are the same function of (seed, step, gap) as in its own program, and its
numbers equal its own program's to float tolerance (the two are compiled apart: sums over
the padded rows add exact zeros but may associate differently). Which program a probe runs
depends only on its config (``frontier.max``), never on the other gaps probed.
"""

from __future__ import annotations

import json

__all__ = ["buffer_length", "shared_chunk", "shared_diagnoser"]


def buffer_length(cfg) -> int | None:
    """The gap whose buffer a trial's chunk program is compiled for, when the trial shares
    it with other gaps: ``frontier.max`` for a probe of a frontier over ``task.length`` with
    ``frontier.shared_program`` whose task draws traced lengths; None otherwise (the trial's
    own program, as before)."""
    from lstmjax.tasks.base import traced_lengths_supported
    from lstmjax.train import make_task

    fc = getattr(cfg, "frontier", None)
    if fc is None or not fc.shared_program or fc.key != "task.length":
        return None
    if not traced_lengths_supported():
        return None
    if not getattr(make_task(cfg), "traced_length", False):
        return None
    return max(int(fc.max), int(cfg.task.length))


def _buffer_cfg(cfg, buffer: int):
    task = cfg.task.model_copy(update={"length": buffer})
    return cfg.model_copy(update={"task": task})


def _program_key(cfg, buffer: int, seeds: int, where: str, program: str = "chunk") -> str:
    """What the shared program depends on: the trial's config at the buffer's gap (the name,
    search and output settings included: they are the same within a run), its seed count on
    the seed axis and its placement."""
    from lstmjax.experiment.config import to_dict

    raw = to_dict(_buffer_cfg(cfg, buffer))
    raw["train"] = {k: v for k, v in raw["train"].items() if k != "steps"}  # a runtime value
    if cfg.train.schedule == "cosine":  # (unless the schedule is built from it)
        raw["train"]["steps"] = cfg.train.steps
    return json.dumps([program, raw, seeds, where], sort_keys=True, default=str)


def shared_chunk(cfg, cache: dict, abstract, placement):
    """``chunk(state, total)`` of ``cfg``'s trial running the program shared by every gap up to
    :func:`buffer_length` (compiled on first use and kept in ``cache``), or None when the
    trial has its own program. ``abstract``: the shapes (and shardings) of the job's state."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

    from lstmjax.experiment.compile_cache import compiler_options
    from lstmjax.train import make_trainer

    buffer = buffer_length(cfg)
    if buffer is None:
        return None
    seeds = int(jax.tree.leaves(abstract)[0].shape[0])
    key = _program_key(cfg, buffer, seeds, placement.label)
    sharding = placement.sharding()
    if sharding is None or isinstance(sharding, SingleDeviceSharding):
        scalar = sharding
    else:
        scalar = NamedSharding(sharding.mesh, PartitionSpec())
    if key not in cache:
        trainer = make_trainer(_buffer_cfg(cfg, buffer), placement.batch_sharding())
        one = trainer.chunk_at
        if cfg.train.vmap_seeds:
            chunk_at = jax.vmap(one, in_axes=(0, None, None))
        else:
            def chunk_at(state, length, total):
                return jax.lax.map(lambda s: one(s, length, total), state)
        scalar_shape = jax.ShapeDtypeStruct((), jnp.int32, sharding=scalar)
        cache[key] = jax.jit(chunk_at, donate_argnums=0).lower(
            abstract, scalar_shape, scalar_shape).compile(compiler_options=compiler_options())
    exe = cache[key]
    length = np.int32(cfg.task.length)
    if scalar is not None:
        length = jax.device_put(length, scalar)

    def chunk(state, total):
        if scalar is not None:
            total = jax.device_put(np.int32(total), scalar)
        return exe(state, length, total)

    return chunk


def shared_diagnoser(cfg, cache: dict):
    """The :class:`~lstmjax.experiment.diagnose.Diagnoser` of ``cfg``'s trial running the
    diagnostics program shared by every gap up to :func:`buffer_length` (built on first use and
    kept in ``cache``; the gap a runtime argument, each line trimmed to the trial's own lags),
    or None when the trial has its own program or records no diagnostics. Diagnostics run every
    ``diagnostics.every`` steps, so the buffer's padded steps cost little there."""
    from lstmjax.experiment.diagnose import Diagnoser
    from lstmjax.train import make_task, make_trainer

    buffer = buffer_length(cfg)
    if buffer is None or cfg.diagnostics is None:
        return None
    key = _program_key(cfg, buffer, len(cfg.train.seeds), "", program="diagnostics")
    if key not in cache:  # (the jitted program places itself where the state lives)
        big = _buffer_cfg(cfg, buffer)
        cache[key] = Diagnoser(make_trainer(big), big, traced_length=True)
    return cache[key].at_length(cfg.task.length, make_task(cfg).seq_len)
