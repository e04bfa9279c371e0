"""One training program for many gaps: ``python -m benchmarks.lengths [--cells lstm,gru,rnn]
[--lengths 20,80,160] [--buffers 160,640] [--repeats 5]``.

On the quickstart's shape (adding, H 32, batch 32, 3 seeds vmapped, 100 steps per chunk,
eval batch 256), per cell: the compile time of the training chunk built for one gap
(``trainer.chunk``, as every gap compiles today) and of the shared chunk built for a buffer
(``trainer.chunk_at(state, length, total)``: any gap up to the buffer, the length a
runtime value), and the time of one chunk at each gap in its own program and in each buffer's
program (all programs of a cell timed interleaved, median of ``--repeats``). The
ratio shared/own is what a gap pays for its padding. Runs with an older lstmjax too (then
only the own-gap rows): put it first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def config(cell: str, length: int):
    import lstmjax as lj

    return lj.experiment.from_dict({
        "name": "bench-lengths",
        "task": {"name": "adding", "length": length},
        "model": {"cell": cell, "hidden_size": 32},
        "train": {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 32,
                  "steps": 100_000, "eval_every": 100, "eval_batch_size": 256,
                  "grad_clip": 1.0, "seeds": 3},
    })


def build(cell: str, length: int, buffer: int | None):
    """(compiled chunk, state0, compile s): the gap's own program (``buffer`` None) or the
    buffer's shared program ``(state, length) -> ...``."""
    import jax

    from lstmjax.experiment.job import _init_args
    from lstmjax.train import make_trainer

    cfg = config(cell, length if buffer is None else buffer)
    tr = make_trainer(cfg)
    state0 = jax.jit(jax.vmap(tr.init))(*_init_args(cfg))
    from lstmjax.experiment.compile_cache import compiler_options

    t0 = time.perf_counter()  # (compiled as a run compiles them: compiler_options())
    if buffer is None:
        exe = jax.jit(jax.vmap(tr.chunk), donate_argnums=0).lower(state0).compile(
            compiler_options=compiler_options())
    else:
        total = jax.numpy.asarray(cfg.train.steps, "int32")
        fn = jax.jit(jax.vmap(tr.chunk_at, in_axes=(0, None, None)), donate_argnums=0)
        compiled = fn.lower(state0, jax.numpy.asarray(length, "int32"), total).compile(
            compiler_options=compiler_options())

        def exe(state, n):
            return compiled(state, n, total)
    return exe, state0, time.perf_counter() - t0


def main(argv=None) -> int:
    import jax
    import jax.numpy as jnp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--lengths", default="20,80,160")
    p.add_argument("--buffers", default="160,640")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    lengths = [int(x) for x in a.lengths.split(",")]
    from lstmjax.train import make_trainer

    shared_ok = getattr(make_trainer(config("lstm", 8)), "chunk_at", None) is not None
    buffers = [int(x) for x in a.buffers.split(",") if x] if shared_ok else []
    print(f"jax {jax.__version__}; shared programs: {'yes' if shared_ok else 'no (old lstmjax)'}")
    print("| cell | gap | program | compile s | chunk ms (median) | min | x own |")
    print("|:--|--:|:--|--:|--:|--:|--:|")
    for cell in a.cells.split(","):
        progs = {}  # (gap, program) -> (call(state), state0, compile s or None)
        for L in lengths:
            progs[(L, "own")] = build(cell, L, None)
        for B in buffers:
            exe, state0, compile_s = build(cell, lengths[0], B)
            for L in lengths:
                if L <= B:
                    n = jnp.asarray(L, jnp.int32)
                    progs[(L, f"buffer {B}")] = (lambda s, exe=exe, n=n: exe(s, n), state0,
                                                 compile_s if L == lengths[0] else None)
        states = {k: jax.tree.map(lambda x: x.copy(), v[1]) for k, v in progs.items()}
        times = {k: [] for k in progs}
        for k in progs:  # warm-up
            states[k], _ = progs[k][0](states[k])
        for _ in range(a.repeats):  # interleaved
            for k in progs:
                t = time.perf_counter()
                states[k], m = progs[k][0](states[k])
                jax.block_until_ready(m)
                times[k].append(time.perf_counter() - t)
        for (L, kind), (_, _, compile_s) in sorted(progs.items(), key=lambda kv: kv[0][0]):
            med = statistics.median(times[(L, kind)]) * 1e3
            own = statistics.median(times[(L, "own")]) * 1e3
            cs = "(same program)" if compile_s is None else f"{compile_s:.1f}"
            print(f"| {cell} | {L} | {kind} | {cs} | {med:.0f} | "
                  f"{min(times[(L, kind)]) * 1e3:.0f} | {med / own:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
