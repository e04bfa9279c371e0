"""Several devices: ``python -m benchmarks.devices [--seeds 8] [--repeats 7] [--sweep N]
[--data-parallel]``.

* **seeds** (always): one lstm trial's training chunk (adding, T=100, H=64, batch 32, 50 steps
  per chunk) with ``--seeds`` vmapped seeds, compiled for one device and for its seeds sharded
  over two (:class:`lstmjax.experiment.schedule.Placement`), timed alternately in this process
  (which splits the CPU into two devices at start); median of ``--repeats``.
* **sweep** (``--sweep N``): ``lstmjax run configs/quickstart.yaml`` with ``--devices 1`` and
  with both devices, alternately, N times each, each in a fresh subprocess and run directory;
  wall time of the whole command (compiles included), median, and whether both found the same
  frontier.

* **data parallel** (``--data-parallel``): one seed of an lstm trial (adding, T=200) at the
  benchmarks' small (H=128, batch 32) and large (H=256, batch 128) sizes, a 10-step training
  chunk on one device vs the batch split over two (``train.data_parallel``), alternately.

Numbers go to stdout (a markdown table) for ``benchmarks/RESULTS.md``; never asserted on.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _budget(c):
    """The step budget a compiled chunk is called with (its trainer's steps, rounded up to
    whole chunks)."""
    import numpy as np

    return np.int32(c.trainer.num_chunks * c.trainer.steps_per_chunk)


def _median_chunk_times(progs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of one training chunk per compiled program, timed alternately after a
    warm-up chunk each (so load drifts hit every program alike)."""
    import jax

    states = {k: c.init(*c.init_args) for k, c in progs.items()}
    times: dict[str, list[float]] = {k: [] for k in progs}
    for k, c in progs.items():  # warm-up
        states[k], m = c.chunk(states[k], _budget(c))
        jax.block_until_ready(m)
    for _ in range(repeats):
        for k, c in progs.items():
            t = time.perf_counter()
            states[k], m = c.chunk(states[k], _budget(c))
            jax.block_until_ready(m)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def seeds_ratio(seeds: int, repeats: int) -> dict:
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    from lstmjax.experiment import from_dict
    from lstmjax.experiment.job import compile_job
    from lstmjax.experiment.schedule import Job, Placement
    from lstmjax.experiment.sweep import expand

    cfg = from_dict({
        "name": "bench-devices", "task": {"name": "adding", "length": 100},
        "model": {"cell": "lstm", "hidden_size": 64},
        "train": {"batch_size": 32, "steps": 100000, "eval_every": 50, "seeds": seeds,
                  "early_stop": False},
    })
    job = Job((expand(cfg)[0],))
    devs = jax.devices()
    progs = {
        "1 device": compile_job(job, {}, Placement((devs[0],))),
        "2 devices (seeds sharded)": compile_job(job, {}, Placement(tuple(devs[:2]))),
    }
    med = _median_chunk_times(progs, repeats)
    return {"median_s": med, "speedup": med["1 device"] / med["2 devices (seeds sharded)"]}


def data_parallel_ratio(repeats: int) -> dict:
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    from lstmjax.experiment import from_dict
    from lstmjax.experiment.job import compile_job
    from lstmjax.experiment.schedule import Job, Placement
    from lstmjax.experiment.sweep import expand

    devs = jax.devices()
    out = {}
    for size, hidden, batch in (("small", 128, 32), ("large", 256, 128)):
        cfg = from_dict({
            "name": "bench-dp", "task": {"name": "adding", "length": 200},
            "model": {"cell": "lstm", "hidden_size": hidden},
            "train": {"batch_size": batch, "eval_batch_size": batch, "steps": 100000,
                      "eval_every": 10, "seeds": 1, "early_stop": False,
                      "data_parallel": True},
        })
        job = Job((expand(cfg)[0],))
        progs = {"1 device": compile_job(job, {}, Placement((devs[0],))),
                 "2 devices (batch split)": compile_job(job, {}, Placement(tuple(devs[:2]),
                                                                           True))}
        med = _median_chunk_times(progs, repeats)
        out[size] = {"median_s": med, "speedup": med["1 device"] / med["2 devices (batch split)"]}
    return out


def _frontier(run_dir: Path) -> list[tuple[str, str, str]]:
    with (run_dir / "frontier.csv").open() as f:
        return [(r["variant"], r["largest_solved"], r["smallest_unsolved"])
                for r in csv.DictReader(f)]


def sweep_ratio(repeats: int, config: str) -> dict:
    times: dict[str, list[float]] = {"--devices 1": [], "all devices": []}
    frontiers: dict[str, list] = {k: [] for k in times}
    exe = [sys.executable, "-m", "lstmjax", "run", config, "--progress", "none"]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for k, extra in (("--devices 1", ["--devices", "1"]), ("all devices", [])):
                out = Path(tmp) / f"{k.replace(' ', '_')}-{i}"
                t = time.perf_counter()
                subprocess.run([*exe, "--out", str(out), *extra], check=True, cwd=ROOT,
                               stdout=subprocess.DEVNULL)
                times[k].append(time.perf_counter() - t)
                frontiers[k].append(_frontier(out) if (out / "frontier.csv").exists() else None)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = all(f == frontiers["--devices 1"][0] for v in frontiers.values() for f in v)
    return {"median_s": med, "all_s": times, "speedup": med["--devices 1"] / med["all devices"],
            "same_frontier": same, "frontier": frontiers["all devices"][0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.devices", description=__doc__)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sweep", type=int, default=0, metavar="N",
                   help="also time the quickstart sweep N times per device count")
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--data-parallel", action="store_true",
                   help="also time one trial's batch split over two devices (small, large)")
    args = p.parse_args(argv)
    from lstmjax.cli import tune_xla

    tune_xla()  # the XLA settings `lstmjax run` uses, before JAX initialises
    print(f"machine: {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    if args.sweep:
        s = sweep_ratio(args.sweep, args.config)
        print("\n| quickstart sweep | median wall s | runs |\n|:--|--:|:--|")
        for k, v in s["median_s"].items():
            print(f"| {k} | {v:.1f} | {', '.join(f'{x:.0f}' for x in s['all_s'][k])} |")
        print(f"\nspeed-up with all devices: {s['speedup']:.2f}x; same frontier: "
              f"{s['same_frontier']} {s['frontier']}")
    if args.data_parallel:
        d = data_parallel_ratio(args.repeats)
        print("\n| data parallel, lstm adding T=200, 10-step chunk | 1 device ms | 2 devices ms "
              "| speed-up |\n|:--|--:|--:|--:|")
        for size, r in d.items():
            a, b = r["median_s"].values()
            print(f"| {size} | {a * 1e3:.0f} | {b * 1e3:.0f} | {r['speedup']:.2f}x |")
    r = seeds_ratio(args.seeds, args.repeats)
    print(f"\n| one trial, {args.seeds} seeds, 50-step chunk | median ms |\n|:--|--:|")
    for k, v in r["median_s"].items():
        print(f"| {k} | {v * 1e3:.0f} |")
    print(f"\nspeed-up on 2 devices: {r['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
