"""Pre-flight: will it fit (a memory estimate per trial), and are its dtypes possible in this
process -- checked before a run writes anything.

The estimate (bytes) of one trial, with S seeds trained together (1 if ``vmap_seeds`` is off),
batch B, evaluation batch B_e, T = ``task.seq_len``, L layers, d directions, projection width
G·H and N parameters, in elements of the cell's dtype (activations: of ``model.compute_dtype``
if that is bfloat16)::

    per seed:  train  = 2 · B · T · (G·H + 3·H) · L · d     (saved activations + cotangents)
                        2 · B · ((T/K + K) · (G·H + 3·H) + T·H) · L · d    (model.remat = K)
               eval   = B_e · T · (G·H + 3·H) · L · d
               state  = 4 · N                             (parameters, gradients, 2 moments)
    trial:     S · (max(train, eval) + state)

It is a lower bound in spirit (XLA needs some more), meant to refuse what cannot possibly fit
-- ``task.length=1e7``, ``train.batch_size=1e6`` -- with the numbers, instead of an
out-of-memory error (or swapping) after the run directory was written.
"""

from __future__ import annotations

import os

from lstmjax.experiment.errors import ConfigError
from lstmjax.experiment.rundir import RunError

__all__ = ["estimate_bytes", "largest_trial_bytes", "memory_limit_bytes", "check_fits",
           "check_dtypes", "needs_x64"]


def estimate_bytes(cfg) -> int:
    """The memory estimate of one trial config (see the module docstring)."""
    from lstmjax import cells, tasks
    from lstmjax._remat import segment_length
    from lstmjax._util import hashable

    task = tasks.make(cfg.task.name, length=cfg.task.length, **hashable(cfg.task.params))
    m = cfg.model
    cell = cells.make(m.cell, hidden_size=m.hidden_size, **hashable(m.options))
    H, P, T = m.hidden_size, cell.projection_size, task.seq_len
    d = 2 if m.bidirectional else 1
    width = d * (m.proj_size or H)
    n_params = 0
    for layer in range(m.num_layers):
        d_in = task.input_size if layer == 0 else width
        n_params += d * (d_in * P + H * P + P)
    n_params += width * task.output_size + task.output_size
    per_position = (P + 3 * H) * m.num_layers * d
    train = 2 * cfg.train.batch_size * T * per_position
    if m.remat is not None:  # T/K carries kept, one segment of K steps redone at a time
        K = segment_length(m.remat, T)
        train = 2 * cfg.train.batch_size * (
            (T // K + K) * per_position + T * H * m.num_layers * d)
    evaluate = cfg.train.eval_batch_size * T * per_position
    seeds = len(cfg.train.seeds) if cfg.train.vmap_seeds else 1
    sizes = {"float64": 8, "float32": 4, "bfloat16": 2}
    param_size = sizes.get(m.options.get("dtype", "float32"), 4)
    # model.compute_dtype: bfloat16 activations, float32 parameters and optimiser state
    act_size = 2 if m.compute_dtype == "bfloat16" else param_size
    return seeds * (max(train, evaluate) * act_size + 4 * n_params * param_size)


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
    """Refuse (one line, nothing written) when a trial's estimate exceeds the device memory."""
    limit = memory_limit_bytes()
    if not limit:
        return
    for trial in trials:
        need = estimate_bytes(trial.cfg)
        if need > limit:
            c = trial.cfg
            where = f"trial {trial.name}: " if trial.values else ""
            raise ConfigError(
                f"{where}needs about {_gb(need)} of memory (estimate; batch_size "
                f"{c.train.batch_size}, length {c.task.length}, hidden_size {c.model.hidden_size}, "
                f"{len(c.train.seeds)} seeds) but this device has {_gb(limit)}; reduce one of them"
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
