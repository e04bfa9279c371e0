"""Do shared gap programs change what a probe solves? ``python -m benchmarks.shared_seeds
[--cell rnn] [--gaps 20,24,28] [--seeds 16] [--steps 10000]``.

The quickstart's probe (adding, H 32, batch 32, Adam, lr 3e-3 for the tanh RNN, 1e-2 else,
clip 1, evaluation on 256 sequences every 100 steps), each gap trained twice with the same
seeds: in a program compiled for that gap alone, and in the frontier's shared program (the
smallest buffer of ``frontier.max`` 160, 40, 10 that holds it; :mod:`lstmjax.experiment.
gap_programs`). Prints the solved seeds and their steps-to-solve per gap and program. The draws
are the same and the arithmetic equal to float tolerance, so on a trajectory near chaos the
seeds' outcomes may differ one by one; a bias would show as solve rates that differ beyond what
the seeds vary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def main(argv=None) -> int:
    import numpy as np

    from lstmjax.experiment import from_dict
    from lstmjax.experiment.gap_programs import buffer_length
    from lstmjax.experiment.job import compile_job
    from lstmjax.experiment.schedule import Job
    from lstmjax.experiment.search.frontier import probe
    from lstmjax.experiment.sweep import expand

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="rnn")
    p.add_argument("--gaps", default="20,24,28")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--steps", type=int, default=10000)
    a = p.parse_args(argv)
    cfg = from_dict({
        "name": "shared-seeds", "task": {"name": "adding", "length": 100},
        "model": {"cell": a.cell, "hidden_size": 32},
        "train": {"optimizer": "adam", "learning_rate": 3e-3 if a.cell == "rnn" else 1e-2,
                  "batch_size": 32, "steps": a.steps, "eval_every": 100,
                  "eval_batch_size": 256, "grad_clip": 1.0, "seeds": a.seeds},
        "frontier": {"key": "task.length", "start": 5, "max": 160}})
    variant = expand(cfg)[0]
    cache: dict = {}
    print("| gap | program | solved | median steps | steps to solve |")
    print("|--:|:--|--:|--:|:--|")
    for gap in [int(g) for g in a.gaps.split(",")]:
        shared = probe(cfg, cfg.frontier, variant, gap, 0)
        own = dataclasses.replace(shared, cfg=shared.cfg.model_copy(update={"frontier": None}))
        for name, trial in (("own", own), (f"buffer {buffer_length(shared.cfg)}", shared)):
            compiled = compile_job(Job((trial,)), cache)
            state = compiled.init(*compiled.init_args)
            for _ in range(-(-a.steps // cfg.train.eval_every)):  # chunks
                state, _ = compiled.chunk(state, np.int32(a.steps))
            steps = sorted(int(s) for s in np.asarray(state.solved_step) if s >= 0)
            median = f"{np.median(steps):.0f}" if steps else "-"
            print(f"| {gap} | {name} | {len(steps)}/{a.seeds} | {median} | {steps} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
