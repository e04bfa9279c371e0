"""Diagnostics in experiments: gradient flow and gate statistics of a trial's trained cells,
at initialisation and every ``diagnostics.every`` steps, written to ``<trial>/diagnostics.jsonl``
(one line per evaluation step and seed), and post hoc from the checkpoints of a finished run
(``lstmjax diagnose RUN_DIR``: it adds the steps a trial lacks -- at initialisation and at the
newest checkpoint -- and keeps every recorded line; each variant's boundary probes first).

What is measured (:mod:`lstmjax.diagnostics`): the first layer's cell (forward direction) on a
fixed batch of the trial's task -- ``diagnostics.batch_size`` sequences drawn from
``fold_in(PRNGKey(seed), 3)`` -- so every evaluation of a seed sees the same sequences:
``gradient_flow`` (log10 gain of ∂h_T/∂h_{T-k} against the lag k), ``gate_stats`` (gate
means, saturation, the quantiles of the keep gate's memory time-scale τ) and the batch's
``dependency_lags`` (``task.dependency_lags``: per sequence, how far back the information its
output needs lies; lines written before they were recorded lack the key).

Where the report looks (:mod:`lstmjax.experiment.why`): at each variant's boundary probes, its
largest solved and smallest unsolved gap. ``diagnose_run`` does those first and names them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lstmjax.experiment.compile_cache import compiler_options
from lstmjax.experiment.progress import Reporter, make_reporter
from lstmjax.experiment.rundir import (
    CHECKPOINT_DIR,
    DIAGNOSTICS_FILE,
    Checkpointer,
    DamagedFile,
    load_run_config,
    read_diagnostics,
    read_finished,
    write_diagnostics,
)

__all__ = ["DIAGNOSTICS_FILE", "Diagnoser", "read_diagnostics", "write_diagnostics",
           "diagnose_run"]


class Diagnoser:
    """Computes a trial's diagnostics lines from a (vmapped over seeds) train state.

    One compiled program per trial: each seed's fixed batch is drawn and its
    ``gradient_flow`` and ``gate_stats`` computed inside it, the seeds one after another
    (``lax.map``: the program is the size of one seed's) -- not a compile per small eager op.

    With ``traced_length=True`` (``trainer`` built at a buffer length, see
    :mod:`lstmjax.experiment.gap_programs`) the program takes the gap as an argument and draws
    the batch with ``task.sample_at``: one program serves every gap up to the buffer's, and
    :meth:`at_length` gives a trial's view of it (its lines trimmed to its own lags)."""

    def __init__(self, trainer, cfg, traced_length: bool = False):
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
        self._length, self._lags = None, None  # (set by at_length)
        # (params_S, keys_S[, length]): the gap is an argument only with traced_length
        self._compute = jax.jit(lambda params_S, keys_S, *length: jax.lax.map(
            lambda args: self._one(*args, *length), (params_S, keys_S)),
            compiler_options=compiler_options())

    def at_length(self, length: int, lags: int) -> Diagnoser:
        """This traced-length diagnoser for one trial: the gap ``length`` and the number of lags
        its own program would report (its sequence length); shares the compiled program."""
        import copy

        import numpy as np

        view = copy.copy(self)
        view._length, view._lags = np.int32(length), int(lags)
        return view

    def _one(self, params, key, length=None):
        """One seed's (GradientFlow, GateStats, dependency lags [B]) on its batch drawn from
        ``fold_in(key, 3)`` (at the traced gap ``length`` when given)."""
        import jax

        from lstmjax import diagnostics

        key3 = jax.random.fold_in(key, 3)
        batch = (self.task.sample(key3, self.batch_size) if length is None
                 else self.task.sample_at(key3, self.batch_size, length))
        g = diagnostics.gradient_flow(self.cell, params, batch.inputs, seq_lengths=batch.lengths,
                                      num_probes=self.num_probes, key=key)
        s = diagnostics.gate_stats(self.cell, params, batch.inputs, seq_lengths=batch.lengths)
        return g, s, self.task.dependency_lags(batch)

    def due(self, before: int, after: int) -> bool:
        """Whether a diagnostics step lies in ``(before, after]`` (always at step 0)."""
        if self.every is None:
            return False
        return after == 0 or after // self.every > before // self.every

    def lines(self, state, step: int) -> list[dict]:
        import jax

        length = () if self._length is None else (self._length,)
        flows, stats, lags = jax.device_get(
            self._compute(state.params["rnn"][0][0], self.keys_S, *length))
        out = []
        for i, seed in enumerate(self.seeds):
            flow = jax.tree.map(lambda x, i=i: x[i][:self._lags], flows).to_dict()
            flow["log10_gain"] = [None if v is None else round(v, 4) for v in flow["log10_gain"]]
            gates = jax.tree.map(lambda x, i=i: x[i], stats).to_dict()
            out.append({"step": step, "seed": seed, "gradient_flow": flow, "gates": gates,
                        "dependency_lags": [int(v) for v in lags[i]]})
        return out


def diagnose_run(run_dir: str | os.PathLike, progress: str | Reporter | None = None
                 ) -> dict[str, Any]:
    """Add to every finished trial's ``diagnostics.jsonl`` the diagnostics it lacks at
    initialisation (rebuilt from the seeds) and at the trial's newest valid checkpoint.

    Recorded lines (e.g. those written during training every ``diagnostics.every`` steps) are
    kept as they are: a (step, seed) already recorded is neither recomputed nor duplicated, a
    trial with nothing missing is not compiled at all, and each file is rewritten atomically
    (with its lines in step order) as soon as its trial is done, so an interrupt loses at most
    the trial in progress. ``progress`` (a mode of :func:`make_reporter` or a
    :class:`Reporter`, default ``none``) gets one line per trial. Returns
    ``{"trials": [names], "skipped": [messages], "new_lines": int, "boundary": [probes]}``.

    The report's why-section looks at each variant's boundary probes (its largest solved and
    smallest unsolved gap, :func:`lstmjax.experiment.why.boundary_probes`): they are diagnosed
    first, and ``boundary`` names them (``"rnn at gap 8 (solved): cell-rnn-length-8"``)."""
    from lstmjax.experiment import search, why

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    found = search.replay(cfg, run_dir)  # (an unfinished trial is skipped below)
    probes = why.boundary_probes(
        [{"name": t.name, "variant": t.variant, "gap": t.gap, "summary": s}
         for t, s, _ in found.entries], found.extra.get("frontier"))
    first = {p.trial["name"] for p in probes}
    trials = sorted(found.trials, key=lambda t: t.name not in first)  # stable: boundary first
    reporter = progress if isinstance(progress, Reporter) else make_reporter(progress or "none")
    done, skipped, added = [], [], 0
    try:
        for i, trial in enumerate(trials):
            label = f"diagnose {i + 1}/{len(trials)} {trial.name}"
            note = _diagnose_trial(run_dir / trial.name, trial)
            if isinstance(note, str):
                skipped.append(f"{trial.name}: {note}")
                reporter.note(f"{label}: skipped (see the warnings)")
                continue
            new, unrestorable = note
            added += new
            done.append(trial.name)
            steps = f"{new} new step{'s' if new != 1 else ''}" if new else "nothing new"
            reporter.note(f"{label}: {steps}")
            if unrestorable:
                skipped.append(f"{trial.name}: no valid checkpoint (initialisation only)")
    finally:
        if not isinstance(progress, Reporter):
            reporter.close()
    boundary = [f"{p.variant} at gap {p.gap} ({p.role}): {p.trial['name']}" for p in probes]
    return {"trials": done, "skipped": skipped, "new_lines": added, "boundary": boundary}


def _diagnose_trial(tdir: Path, trial) -> str | tuple[int, bool]:
    """Complete one trial's diagnostics file; ``(new steps, no valid checkpoint)`` or why the
    trial was skipped."""
    import jax
    import jax.numpy as jnp

    from lstmjax.train import make_trainer

    try:
        summary = read_finished(tdir)
    except DamagedFile as e:
        return str(e)
    if summary is None:
        return "not finished"
    path = tdir / DIAGNOSTICS_FILE
    try:
        have = read_diagnostics(path, strict=True)
    except DamagedFile as e:  # rewriting it would drop the lines after the damage
        return f"{e}; it is left as it is (move it away to diagnose the trial afresh)"
    seeds = list(trial.cfg.train.seeds)
    recorded = {(d["step"], d.get("seed")) for d in have}

    def missing(step: int) -> bool:
        return any((step, seed) not in recorded for seed in seeds)

    checkpoints = Checkpointer(tdir / CHECKPOINT_DIR)
    saved = checkpoints.steps()
    if not missing(0) and (not saved or not missing(saved[0])):
        # everything there already: nothing to compile
        return 0, not saved and max((d["step"] for d in have), default=0) == 0
    trainer = make_trainer(trial.cfg)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    lr = jnp.float32(trial.cfg.train.learning_rate)
    state0 = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)),
                     compiler_options=compiler_options("once"))(keys, lr)
    diag = Diagnoser(trainer, trial.cfg)
    new = []
    if missing(0):
        new.append(diag.lines(state0, 0))
    step, state = (None, None) if not saved else checkpoints.restore_latest(state0)
    if step is not None and step > 0 and missing(step):
        new.append(diag.lines(state, step))
    new_lines = [d for lines in new for d in lines if (d["step"], d["seed"]) not in recorded]
    if new_lines:
        order = {seed: i for i, seed in enumerate(seeds)}
        merged = sorted(have + new_lines,  # stable: recorded lines keep their order in a step
                        key=lambda d: (d["step"], order.get(d.get("seed"), len(order))))
        write_diagnostics(path, merged)
    return len(new), step is None
