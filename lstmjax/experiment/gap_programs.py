"""Compiled programs shared by many gaps.

A frontier over ``task.length`` trains the same model on the same task family at many gaps.
Where the task can draw a *traced* length into a fixed buffer (``task.traced_length``:
:meth:`lstmjax.tasks.base.Task.sample_at`), one compiled program serves every gap up to its
buffer's, the gap a runtime argument:

* **Diagnostics** (:func:`shared_diagnoser`, always): one program per variant, compiled for
  ``frontier.max``; each probe's lines are trimmed to its own lags. Diagnostics run every
  ``diagnostics.every`` steps, so the padding costs little there (a gap-5 LSTM probe's
  diagnostics in a 160-step buffer: ~0.1 s a call, against 3-8 s to compile its own program).
* **Training** (:func:`shared_chunk`; ``frontier.shared_program``, on by default): each
  probe runs the chunk program (:attr:`lstmjax.train.Trainer.chunk_at`) compiled for the
  smallest buffer of ``frontier.max``, ``max / r``, ``max / r**2``, ... (``r =
  frontier.buffer_ratio``, 4 by default; None: ``frontier.max`` only) that holds its gap
  (:func:`buffer_length`): a doubling frontier compiles about ``log_r(max / start) + 1``
  training programs per variant instead of one per probe. The masked fast loops stop at the
  batch's last valid step (:mod:`lstmjax.fast`), so a gap runs none of the buffer's padded
  steps; it still pays for the buffer-sized work outside the loops (the hoisted projection,
  the loops' zeroed buffers, the readout): 1.3-1.5x its own step time in a buffer 2x longer,
  up to ~2x in one 4x longer (``benchmarks/RESULTS.md``). The quickstart (gaps 5 to 160, 3
  variants) then compiles 9 training programs instead of 18, and 3 diagnostics programs
  instead of 18: the whole run in 0.66x the wall time of a training and a diagnostics
  program per probe.

A probe's draws are the same function of (seed, step, gap) as in its own program, and its
numbers equal its own program's to float tolerance (the two are compiled apart: sums over
the padded rows add exact zeros but may associate differently). Over thousands of steps a
trajectory near chaos (the tanh RNN at a gap it barely solves) amplifies that difference, so
a marginal probe's seeds can solve at other steps or not at all -- as they would with other
seeds: measured over 16 seeds at gaps 20 and 24, own and shared programs solved 12 and 10,
and 5 and 6 (``benchmarks/RESULTS.md``). Which program a probe runs depends only on its own
config (its gap, ``frontier.max`` and ``frontier.buffer_ratio``), never on the other gaps
probed, and a run is bit-identical to itself.
"""

from __future__ import annotations

import json
import math

__all__ = ["buffer_length", "buffers", "buffers_used", "diagnostics_buffer", "shared_chunk",
           "shared_diagnoser"]


def _traced_frontier(cfg) -> bool:
    """Whether ``cfg`` is a probe of a frontier over ``task.length`` whose task draws traced
    lengths (so a program compiled for a longer gap can serve it)."""
    from lstmjax.tasks.base import traced_lengths_supported
    from lstmjax.train import make_task

    fc = getattr(cfg, "frontier", None)
    if fc is None or fc.key != "task.length" or not traced_lengths_supported():
        return False
    return bool(getattr(make_task(cfg), "traced_length", False))


def buffers(max_gap: int, ratio: float | None) -> list[int]:
    """The shared programs' buffer lengths, longest first: ``max_gap``, then
    ``ceil(previous / ratio)`` while that is at least 1 and shorter (``ratio`` None: only
    ``max_gap``). E.g. ``buffers(160, 4) == [160, 40, 10, 3, 1]``."""
    out = [int(max_gap)]
    while ratio is not None:
        nxt = math.ceil(out[-1] / ratio)
        if nxt < 1 or nxt >= out[-1]:
            break
        out.append(nxt)
    return out


def buffers_used(fc) -> int:
    """How many of :func:`buffers` a frontier's gaps (``fc.start`` to ``fc.max``) can train in,
    i.e. the most training programs one variant compiles when its gaps share them."""
    return sum(b >= fc.start for b in buffers(fc.max, fc.buffer_ratio))


def buffer_length(cfg) -> int | None:
    """The gap whose buffer a trial's training chunk is compiled for when it shares the program
    with other gaps (``frontier.shared_program``): the smallest of :func:`buffers`
    (``frontier.max``, ``frontier.buffer_ratio``) that holds ``task.length``. None otherwise
    (the trial's own program)."""
    fc = getattr(cfg, "frontier", None)
    if fc is None or not fc.shared_program or not _traced_frontier(cfg):
        return None
    gap = int(cfg.task.length)
    if gap >= int(fc.max):
        return gap
    return min(b for b in buffers(fc.max, fc.buffer_ratio) if b >= gap)


def diagnostics_buffer(cfg) -> int | None:
    """The gap whose buffer a trial's diagnostics program is compiled for when it is shared by
    the variant's gaps: ``frontier.max`` (whatever ``shared_program`` says: diagnostics are
    rare, their padding cheap), or the trial's gap if longer; None where the task cannot
    draw traced lengths, outside a frontier over ``task.length``, or without diagnostics."""
    fc = getattr(cfg, "frontier", None)
    if getattr(cfg, "diagnostics", None) is None or not _traced_frontier(cfg):
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
    diagnostics program shared by every gap up to :func:`diagnostics_buffer` (built on first
    use and kept in ``cache``; the gap a runtime argument, each line trimmed to the trial's own
    lags), or None when the trial has its own program or records no diagnostics."""
    from lstmjax.experiment.diagnose import Diagnoser
    from lstmjax.train import make_task, make_trainer

    buffer = diagnostics_buffer(cfg)
    if buffer is None:
        return None
    key = _program_key(cfg, buffer, len(cfg.train.seeds), "", program="diagnostics")
    if key not in cache:  # (the jitted program places itself where the state lives)
        big = _buffer_cfg(cfg, buffer)
        cache[key] = Diagnoser(make_trainer(big), big, traced_length=True)
    return cache[key].at_length(cfg.task.length, make_task(cfg).seq_len)
