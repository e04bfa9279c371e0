"""Compile cost of lstmjax's programs: ``python -m benchmarks.compile [--quick] [--out FILE]``.

Per cell (``lstm``, ``gru``, ``rnn``) and config (``small``: H 32, adding T 100; ``large``:
H 128, T 500; 3 seeds, batch 32), the four programs an experiment compiles, built as the
experiment layer builds them (:mod:`lstmjax.experiment.job`, :mod:`.diagnose`):

* ``chunk`` -- the jitted, seed-vmapped ``trainer.chunk`` (``train.eval_every`` optimiser
  steps, then an evaluation), as :func:`~lstmjax.experiment.job.compile_job` builds it;
* ``eval``  -- the length-generalisation program
  (:func:`~lstmjax.experiment.trial_run.length_eval_program`);
* ``init``  -- the vmapped initialiser over (seed key, learning rate);
* ``diag``  -- the diagnostics program (:class:`~lstmjax.experiment.diagnose.Diagnoser`).

For each: compile seconds (``lower`` + ``compile``, JAX's persistent cache off in this
process, median over ``--compile-repeats`` fresh lowerings), StableHLO lines, the optimised
HLO's lines and bytes (``compiled.as_text()``), its fusions and while loops (instructions
counted in that text), and the time of one call after warm-up (median, all programs of a
(cell, config) timed interleaved, :mod:`benchmarks.harness`) -- for the chunk also per
optimiser step, so a compile saving that slows training shows. ``--quick``: one tiny config,
``lstm`` only (a smoke test: seconds; never read its times).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import time
from pathlib import Path

from benchmarks import harness

CELLS = ("lstm", "gru", "rnn")
PROGRAMS = ("chunk", "eval", "init", "diag")


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str
    H: int
    T: int
    batch: int
    seeds: int
    steps_per_chunk: int
    eval_batch: int

    def __str__(self) -> str:
        return (f"{self.name} (H={self.H}, adding T={self.T}, batch {self.batch}, "
                f"{self.seeds} seeds, {self.steps_per_chunk} steps/chunk, "
                f"eval batch {self.eval_batch})")


SETUPS = (
    Setup("small", 32, 100, 32, 3, 100, 256),
    Setup("large", 128, 500, 32, 3, 20, 256),
)
QUICK_SETUPS = (Setup("quick", 4, 8, 4, 3, 2, 8),)
HEADER = ["cell", "config", "program", "compile s", "StableHLO lines", "HLO lines", "HLO KiB",
          "fusions", "while loops", "run ms", "ms/step"]


def trial_config(cell: str, s: Setup):
    """The trial config of one row: the quickstart's training settings at ``s``'s sizes."""
    import lstmjax as lj

    return lj.experiment.from_dict({
        "name": "bench-compile",
        "task": {"name": "adding", "length": s.T},
        "model": {"cell": cell, "hidden_size": s.H},
        "train": {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": s.batch,
                  "steps": 1000 * s.steps_per_chunk, "eval_every": s.steps_per_chunk,
                  "eval_batch_size": s.eval_batch, "grad_clip": 1.0, "seeds": s.seeds},
        "diagnostics": {"every": 1000, "batch_size": s.batch},
        "eval": {"lengths": [s.T]},
    })


def hlo_counts(text: str) -> dict[str, int]:
    """Lines, bytes, fusion and while instructions of an optimised HLO module's text."""
    return {
        "lines": text.count("\n") + 1,
        "bytes": len(text.encode()),
        # an instruction is `%name = <shape> op(operands), ...`; a shape ends in ] } or )
        "fusions": len(re.findall(r"[\]})] fusion\(", text)),
        "whiles": len(re.findall(r"[\]})] while\(", text)),
    }


class Program:
    """One program: ``build()`` returns a fresh ``(jitted, args)``; compiled once per repeat
    from a fresh lowering; ``run()`` calls the last compiled executable (blocking)."""

    def __init__(self, name: str, build, steps: int = 0, donate: bool = False):
        self.name, self.build, self.steps, self.donate = name, build, steps, donate
        self.compile_s: list[float] = []
        self.stablehlo_lines = 0
        self.counts: dict[str, int] = {}
        self.compiled = None
        self.args = None

    def compile(self) -> None:
        jitted, args = self.build()
        t0 = time.perf_counter()
        lowered = jitted.lower(*args)
        compiled = lowered.compile()
        self.compile_s.append(time.perf_counter() - t0)
        self.stablehlo_lines = lowered.as_text().count("\n") + 1
        self.counts = hlo_counts(compiled.as_text())
        self.compiled, self.args = compiled, args

    def run(self) -> None:
        import jax

        out = self.compiled(*self.args)
        jax.block_until_ready(out)
        if self.donate:  # the chunk donates its state: the next call takes the new one
            self.args = (out[0],)


class _Options:
    """A jitted function whose ``lower(...).compile()`` passes ``options`` (as the experiment
    layer compiles its chunk and initialiser: :func:`~lstmjax.experiment.compile_cache.
    compiler_options`); calling it runs the plain jitted function."""

    def __init__(self, jitted, options: dict):
        self.jitted, self.options = jitted, options

    def __call__(self, *args):
        return self.jitted(*args)

    def lower(self, *args):
        lowered = self.jitted.lower(*args)
        options = self.options

        class _Lowered:
            def as_text(self):
                return lowered.as_text()

            def compile(self):
                return lowered.compile(compiler_options=options)

        return _Lowered()


def programs(cell: str, s: Setup) -> list[Program]:
    """The four programs of one (cell, config), each built as the experiment layer does."""
    import jax

    from lstmjax.experiment.compile_cache import compiler_options
    from lstmjax.experiment.diagnose import Diagnoser
    from lstmjax.experiment.job import _init_args, seeds_in_one_program
    from lstmjax.experiment.trial_run import length_eval_program
    from lstmjax.train import make_trainer

    cfg = trial_config(cell, s)

    def trainer():
        return make_trainer(cfg)

    def init_program(tr):
        return _Options(jax.jit(jax.vmap(tr.init, in_axes=(0, 0))), compiler_options("once"))

    args = _init_args(cfg)
    state0 = init_program(trainer())(*args)

    def chunk():
        tr = trainer()
        fn = jax.jit(seeds_in_one_program(tr.chunk, cfg.train.vmap_seeds), donate_argnums=0)
        return _Options(fn, compiler_options()), (jax.tree.map(lambda a: a.copy(), state0),)

    def evaluation():
        tr = trainer()
        return length_eval_program(tr, cfg, s.T), (state0.params, state0.key)

    def init():
        return init_program(trainer()), args

    def diag():
        d = Diagnoser(trainer(), cfg)
        return d._compute, (state0.params["rnn"][0][0], d.keys_S)

    return [Program("chunk", chunk, s.steps_per_chunk, donate=True),
            Program("eval", evaluation), Program("init", init), Program("diag", diag)]


def measure(cells, setups, compile_repeats: int, repeats: int, only_programs=PROGRAMS):
    """Rows of the table (lists of strings) and the raw numbers, per (cell, setup)."""
    rows, raw = [], []
    for s in setups:
        for cell in cells:
            progs = [p for p in programs(cell, s) if p.name in only_programs]
            for _ in range(compile_repeats):  # interleaved: load hits every program alike
                for p in progs:
                    p.compile()
            times = harness.interleaved({p.name: p.run for p in progs}, repeats=repeats,
                                        warmup=2, budget_s=20.0)
            for p in progs:
                t = times[p.name]
                c = statistics.median(p.compile_s)
                per_step = f"{t.ms / p.steps:.3f}" if p.steps else ""
                rows.append([cell, s.name, p.name, f"{c:.2f}", str(p.stablehlo_lines),
                             str(p.counts["lines"]), f"{p.counts['bytes'] / 1024:.0f}",
                             str(p.counts["fusions"]), str(p.counts["whiles"]),
                             f"{t.ms:.1f}", per_step])
                raw.append({"cell": cell, "config": s.name, "program": p.name,
                            "compile_s": list(p.compile_s), "run_s": t.median,
                            "run_low_s": t.low, "run_high_s": t.high, **p.counts,
                            "stablehlo_lines": p.stablehlo_lines})
                print(" | ".join(rows[-1]), flush=True)
    return rows, raw


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def machine_header() -> list[str]:
    import jax

    v = harness.versions()
    return [
        f"- date: {harness.now()}",
        f"- machine: {harness.cpu_model()}; load average at start: {harness.load_average()}",
        f"- backend: {jax.default_backend()} ({jax.devices()[0].device_kind}); versions: "
        + ", ".join(f"{k} {v[k]}" for k in ("python", "jax", "jaxlib")),
        f"- XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}; persistent compile cache off",
    ]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one tiny config, lstm (smoke run)")
    p.add_argument("--only", nargs="+", default=[], metavar="TOKEN",
                   help=f"cells {CELLS}, configs (small, large) or programs {PROGRAMS}")
    p.add_argument("--compile-repeats", type=int, default=None,
                   help="fresh lowerings compiled per program (median; default 1, quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per program")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import jax

    only = set(args.only)
    known = set(CELLS) | set(PROGRAMS) | {s.name for s in SETUPS}
    if only - known:
        print(f"error: unknown --only tokens {sorted(only - known)}; choose from {sorted(known)}",
              file=sys.stderr)
        return 2
    cells = [c for c in CELLS if c in only] or (["lstm"] if args.quick else list(CELLS))
    setups = QUICK_SETUPS if args.quick else (
        [s for s in SETUPS if s.name in only] or list(SETUPS))
    progs = [p for p in PROGRAMS if p in only] or list(PROGRAMS)
    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # time real compiles
    try:
        header = machine_header()
        print("\n".join(header), flush=True)
        rows, _ = measure(cells, setups, args.compile_repeats or 1,
                          args.repeats or (3 if args.quick else 7), progs)
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
    lines = ["## Compile cost per program (benchmarks/compile.py)", "", *header, "",
             *(f"- {s}" for s in setups), "", *markdown(HEADER, rows)]
    print("\n" + "\n".join(lines[len(header) + 3:]), flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
