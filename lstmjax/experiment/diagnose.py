"""Diagnostics in experiments: gradient flow and gate statistics of a trial's trained cells,
at initialisation and every ``diagnostics.every`` steps, written to ``<trial>/diagnostics.jsonl``
(one line per evaluation step and seed), and post hoc from the checkpoints of a finished run
(``lstmjax diagnose RUN_DIR``).

What is measured (:mod:`lstmjax.diagnostics`): the first layer's cell (forward direction) on a
fixed batch of the trial's task -- ``diagnostics.batch_size`` sequences drawn from
``fold_in(PRNGKey(seed), 3)`` -- so every evaluation of a seed sees the same sequences:
``gradient_flow`` (log10 gain of ∂h_T/∂h_{T-k} against the lag k) and ``gate_stats`` (gate
means, saturation, the keep gate's memory time-scale τ).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lstmjax.experiment.rundir import (
    CHECKPOINT_DIR,
    DIAGNOSTICS_FILE,
    Checkpointer,
    load_run_config,
    read_diagnostics,
    write_diagnostics,
)

__all__ = ["DIAGNOSTICS_FILE", "Diagnoser", "read_diagnostics", "write_diagnostics",
           "diagnose_run"]


class Diagnoser:
    """Computes a trial's diagnostics lines from a (vmapped over seeds) train state.

    One compiled program per trial: each seed's fixed batch is drawn and its
    ``gradient_flow`` and ``gate_stats`` computed inside it, the seeds one after another
    (``lax.map``: the program is the size of one seed's) -- not a compile per small eager op."""

    def __init__(self, trainer, cfg):
        import jax
        import jax.numpy as jnp

        dc = cfg.diagnostics
        self.every = dc.every if dc is not None else None
        self.num_probes = dc.num_probes if dc is not None else 8
        self.batch_size = dc.batch_size if dc is not None else 32
        self.cell = trainer.model.net.cells[0]
        self.task = trainer.task
        self.seeds = list(cfg.train.seeds)
        self.keys_S = jnp.stack([jax.random.PRNGKey(s) for s in self.seeds])
        self._compute = jax.jit(lambda params_S, keys_S: jax.lax.map(
            lambda args: self._one(*args), (params_S, keys_S)))

    def _one(self, params, key):
        """One seed's (GradientFlow, GateStats) on its batch drawn from ``fold_in(key, 3)``."""
        import jax

        from lstmjax import diagnostics

        batch = self.task.sample(jax.random.fold_in(key, 3), self.batch_size)
        g = diagnostics.gradient_flow(self.cell, params, batch.inputs, seq_lengths=batch.lengths,
                                      num_probes=self.num_probes, key=key)
        s = diagnostics.gate_stats(self.cell, params, batch.inputs, seq_lengths=batch.lengths)
        return g, s

    def due(self, before: int, after: int) -> bool:
        """Whether a diagnostics step lies in ``(before, after]`` (always at step 0)."""
        if self.every is None:
            return False
        return after == 0 or after // self.every > before // self.every

    def lines(self, state, step: int) -> list[dict]:
        import jax

        flows, stats = jax.device_get(self._compute(state.params["rnn"][0][0], self.keys_S))
        out = []
        for i, seed in enumerate(self.seeds):
            flow = jax.tree.map(lambda x, i=i: x[i], flows).to_dict()
            flow["log10_gain"] = [None if v is None else round(v, 4) for v in flow["log10_gain"]]
            gates = jax.tree.map(lambda x, i=i: x[i], stats).to_dict()
            out.append({"step": step, "seed": seed, "gradient_flow": flow, "gates": gates})
        return out


def diagnose_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Compute the diagnostics of every finished trial from its checkpoints -- at
    initialisation (rebuilt from the seeds) and at the trial's final checkpoint -- and write
    each trial's ``diagnostics.jsonl``. Returns ``{"trials": [names], "skipped": [messages]}``."""
    import jax
    import jax.numpy as jnp

    from lstmjax.experiment import search
    from lstmjax.train import make_trainer

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    done, skipped = [], []
    for trial, summary, damage in search.replay(cfg, run_dir).entries:
        tdir = run_dir / trial.name
        if damage is not None:
            skipped.append(damage)
            continue
        if summary is None:
            skipped.append(f"{trial.name}: not finished")
            continue
        trainer = make_trainer(trial.cfg)
        keys = jnp.stack([jax.random.PRNGKey(s) for s in trial.cfg.train.seeds])
        lr = jnp.float32(trial.cfg.train.learning_rate)
        state0 = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))(keys, lr)
        diag = Diagnoser(trainer, trial.cfg)
        lines = diag.lines(state0, 0)
        step, state = Checkpointer(tdir / CHECKPOINT_DIR).restore_latest(state0)
        if step is None:
            skipped.append(f"{trial.name}: no valid checkpoint (initialisation only)")
        elif step > 0:
            lines += diag.lines(state, step)
        write_diagnostics(tdir / DIAGNOSTICS_FILE, lines)
        done.append(trial.name)
    return {"trials": done, "skipped": skipped}
