"""Pre-flight: will it fit (a memory estimate per trial), and are its dtypes possible in this
process -- checked before a run writes anything.

A trial runs two kinds of programs: the training chunk (optimiser steps, then an evaluation
at ``task.length``) and, after training, one evaluation per ``eval.lengths`` value. The
estimate (bytes) of a trial is that of its largest program. With S seeds (S_c = 1 in the
chunk if ``vmap_seeds`` is off; the length evaluations always vmap all S), batch B, evaluation
batch B_e (``eval.batch_size`` for the length evaluations, default ``train.eval_batch_size``),
T = ``task.seq_len`` (T_k at evaluation length k), L layers, d directions, projection width
G·H, the task's input and output widths I and O, and N parameters::

    per seed:  train  = 2 · B · T · (G·H + 3·H) · L · d     (saved activations + cotangents)
                        2 · B · ((T/K + K) · (G·H + 3·H) + T·H) · L · d    (model.remat = K)
                      + B · T · (I + 3·O)      (one-hot inputs; logits, log-softmax, gradient)
               eval_k = B_e · T_k · ((G·H + 3·H) · L · d + I + O)     (inputs, logits)
               state  = 4 · N                             (parameters, gradients, 2 moments)
    trial:     max(S_c · max(train, eval_T), S · max_k eval_k) + S · state

in elements of the cell's dtype (activations: of ``model.compute_dtype`` if that is bfloat16;
inputs, logits and the loss are float32 or wider). Against XLA's own buffer plan of the
compiled programs (``memory_analysis()``: temporaries, arguments and outputs) it is within
0.5x-2x for the configs of ``tests/test_hardening_memory.py``. It is meant to refuse what
cannot possibly fit -- ``task.length=1e7``, ``train.batch_size=1e6``, ``eval.lengths:
[5000000]``, a 65536-token vocabulary at length 1024 -- with the numbers, instead of an
out-of-memory error (or swapping) after the run directory was written, or after training.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.rundir import RunError

__all__ = ["estimate_bytes", "largest_program", "largest_trial_bytes", "memory_limit_bytes",
           "check_fits", "check_dtypes", "needs_x64"]


class _Program(NamedTuple):
    """One program's estimate: ``bytes``, the evaluation length it runs at (None: the
    training chunk) and the task's input/output widths where they dominate it (else None)."""

    bytes: int
    length: int | None
    wide: tuple[int, int] | None


def estimate_bytes(cfg) -> int:
    """The memory estimate of one trial config (see the module docstring)."""
    return _largest_program(cfg).bytes


def largest_program(cfg) -> _Program:
    """The largest program of one trial config: ``bytes`` (the estimate :func:`check_fits`
    holds against the device's memory), ``length`` (the ``eval.lengths`` value it evaluates
    at; None: the training chunk) and ``wide`` (the task's input/output widths where they
    dominate it, else None)."""
    return _largest_program(cfg)


def _largest_program(cfg) -> _Program:
    from lstmjax import cells, tasks
    from lstmjax._remat import segment_length
    from lstmjax._util import hashable

    task = tasks.make(cfg.task.name, length=cfg.task.length, **hashable(cfg.task.params))
    m = cfg.model
    cell = cells.make(m.cell, hidden_size=m.hidden_size, **hashable(m.options))
    H, P, T = m.hidden_size, cell.projection_size, task.seq_len
    I, O = task.input_size, task.output_size
    d = 2 if m.bidirectional else 1
    width = d * (m.proj_size or H)
    n_params = 0
    for layer in range(m.num_layers):
        d_in = I if layer == 0 else width
        n_params += d * (d_in * P + H * P + P)
    n_params += width * O + O
    sizes = {"float64": 8, "float32": 4, "bfloat16": 2}
    param_size = sizes.get(m.options.get("dtype", "float32"), 4)
    # model.compute_dtype: bfloat16 activations, float32 parameters and optimiser state
    act_size = 2 if m.compute_dtype == "bfloat16" else param_size
    io_size = max(4, param_size)  # task inputs, readout, logits and loss: float32 or wider
    per_position = (P + 3 * H) * m.num_layers * d
    B, B_e = cfg.train.batch_size, cfg.train.eval_batch_size
    train = 2 * B * T * per_position
    if m.remat is not None:  # T/K carries kept, one segment of K steps redone at a time
        K = segment_length(m.remat, T)
        train = 2 * B * ((T // K + K) * per_position + T * H * m.num_layers * d)
    seeds = len(cfg.train.seeds)
    state = seeds * 4 * n_params * param_size

    def program(batch: int, steps: int, io_width: int, activations: int, copies: int,
                length: int | None) -> _Program:
        io = batch * steps * io_width * io_size
        return _Program(copies * (activations * act_size + io) + state, length,
                        (I, O) if io > activations * act_size else None)

    chunk_seeds = seeds if cfg.train.vmap_seeds else 1
    programs = [
        program(B, T, I + 3 * O, train, chunk_seeds, None),
        program(B_e, T, I + O, B_e * T * per_position, chunk_seeds, None),
    ]
    if cfg.eval is not None and cfg.eval.lengths:
        B_e = cfg.eval.batch_size or B_e
        for length in cfg.eval.lengths:
            T_k = tasks.make(cfg.task.name, length=length, **hashable(cfg.task.params)).seq_len
            programs.append(program(B_e, T_k, I + O, B_e * T_k * per_position, seeds,
                                    length))
    return max(programs, key=lambda p: p.bytes)


def largest_trial_bytes(cfg, trials=None) -> int:
    """The largest :func:`estimate_bytes` of the trials that bound ``cfg``'s memory (a
    frontier's at ``frontier.max``; :attr:`lstmjax.experiment.search.Search.largest`);
    ``trials``: ``expand(cfg)`` if the caller has it. 0 if the sweep cannot be expanded
    (``experiment.run`` reports why)."""
    from lstmjax.experiment import search

    try:
        bound = search.for_config(cfg, None, trials=trials).largest
        return max((estimate_bytes(t.cfg) for t in bound), default=0)
    except (ConfigError, ValueError, TypeError):
        return 0


def memory_limit_bytes() -> int | None:
    """Memory of the default device: the accelerator's allocator limit, else the host's RAM."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
    except Exception:  # noqa: BLE001 -- no device statistics: use the host's memory
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(trials) -> None:
    """Refuse (one line, nothing written) when a trial's estimate exceeds the device memory:
    its training, or its evaluation at one of ``eval.lengths`` (which would fail only after
    the whole training)."""
    limit = memory_limit_bytes()
    if not limit:
        return
    for trial in trials:
        largest = _largest_program(trial.cfg)
        if largest.bytes <= limit:
            continue
        c = trial.cfg
        where = f"trial {trial.name}: " if trial.values else ""
        seeds = f"{len(c.train.seeds)} seeds"
        if largest.wide:
            seeds += f", {c.task.name}'s input/output width {largest.wide[0]}/{largest.wide[1]}"
        if largest.length is None:
            raise ConfigError(
                f"{where}needs about {_gb(largest.bytes)} of memory (estimate; batch_size "
                f"{c.train.batch_size}, length {c.task.length}, hidden_size "
                f"{c.model.hidden_size}, {seeds}) but this device has {_gb(limit)}; reduce one "
                "of them"
            )
        raise ConfigError(
            f"{where}the evaluation at eval.lengths {largest.length} needs about "
            f"{_gb(largest.bytes)} of memory (estimate; batch size "
            f"{c.eval.batch_size or c.train.eval_batch_size}, hidden_size "
            f"{c.model.hidden_size}, {seeds}) but this device has {_gb(limit)}; reduce "
            "eval.lengths or eval.batch_size (it would fail after the whole training)"
        )


def _gb(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n < 2**40 else f"{n / 2**40:.3g} TiB"


def check_dtypes(trials) -> None:
    """Never record a dtype that was not used: float64 cells need 64-bit JAX (``lstmjax run``
    turns it on at program start for such configs), and a sweep may not mix float64 with other
    dtypes (64-bit mode would change the float32 trials' task data and losses)."""
    import jax

    dtypes = {t.cfg.model.options.get("dtype", "float32") for t in trials}
    if "float64" not in dtypes:
        return
    if len(dtypes) > 1:
        others = ", ".join(sorted(dtypes - {"float64"}))
        raise RunError(
            f"model.options.dtype: the sweep mixes float64 with {others}; "
            "run the float64 trials as a config of their own"
        )
    if not jax.config.jax_enable_x64:
        raise RunError(
            "model.options.dtype: float64 needs 64-bit JAX, which is off in this process; "
            "`lstmjax run` turns it on for such configs, in Python call "
            "jax.config.update('jax_enable_x64', True) at program start"
        )


def needs_x64(cfg, trials=None) -> bool:
    """Whether any trial of ``cfg`` asks for float64 cells (the CLI then enables 64-bit JAX);
    ``trials``: ``expand(cfg)`` if the caller has it."""
    from lstmjax.experiment.sweep import expand

    trials = expand(cfg) if trials is None else trials
    return any(t.cfg.model.options.get("dtype") == "float64" for t in trials)
