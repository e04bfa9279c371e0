"""What ``benchmarks/gpu.sh`` records on whatever accelerator JAX finds (GPU, or the CPU):
``python -m benchmarks.gpu [--smoke] [--out FILE]``.

Sections, each appended to ``--out`` as soon as it is measured (a run cut short keeps what it
had; the file is a Markdown block for ``benchmarks/RESULTS.md``):

1. ``compile`` -- :mod:`benchmarks.compile`'s table: compile and step times of the training
   chunk, evaluation, initialiser and diagnostics programs (lstm, gru, rnn; small, large);
2. ``cells``   -- lstm/gru train step (fwd+bwd) and inference of ``lj.scan`` against torch's
   ``nn.LSTM``/``nn.GRU`` on the same device (cuDNN on a GPU; torch's CPU kernels otherwise)
   and ``jax.experimental.rnn`` (cuDNN from JAX) where it runs, configs of ``benchmarks.run``;
3. ``seeds``   -- a training chunk with 1 -> 64 vmapped seeds against the cost of one;
4. ``quickstart`` -- the wall time of ``lstmjax run configs/quickstart.yaml --compile-cache
   off`` in a subprocess, trimmed to ``frontier.max = --quickstart-max`` (0: the whole
   config) so that it fits the script's budget; the block says which.

``--smoke`` (or ``LSTMJAX_GPU_SMOKE=1``): tiny shapes and a tiny quickstart, so the whole
script is known to work on a CPU (``tests/test_bench.py`` runs it) before a GPU is lent.
Times are never asserted on.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks.run: see there

from benchmarks import compile as compile_bench  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.impls import Config, Contender, lstmjax_contenders, torch_contenders  # noqa: E402

SECTIONS = ("compile", "cells", "seeds", "quickstart")
CELL_CONFIGS = (Config("small", 32, 200, 2, 128), Config("large", 128, 200, 32, 256))
SMOKE_CELL_CONFIGS = (Config("smoke", 4, 16, 2, 8),)
SEEDS = (1, 4, 16, 64)
SMOKE_SEEDS = (1, 2)
# the smoke quickstart: the config's frontier, one cell, tiny sizes (one probe)
SMOKE_QUICKSTART = ["sweep.variant=[{name: lstm, model.cell: lstm}]", "model.hidden_size=4",
                    "train.batch_size=4", "train.eval_batch_size=8", "train.steps=4",
                    "train.eval_every=2", "frontier.max=6",
                    "diagnostics.every=4", "diagnostics.batch_size=4"]


class Block:
    """The Markdown block, rewritten to ``path`` after every section."""

    def __init__(self, path: Path | None, title: str):
        self.path, self.lines = path, [title, ""]

    def add(self, lines: list[str]) -> None:
        self.lines += [*lines, ""]
        print("\n".join(lines), flush=True)
        if self.path is not None:
            self.path.write_text("\n".join(self.lines) + "\n")


def accelerator() -> str:
    import jax

    d = jax.devices()[0]
    return f"{jax.default_backend()}: {len(jax.devices())} x {d.device_kind}"


def header(smoke: bool) -> list[str]:
    v = harness.versions()
    return [
        f"- date: {harness.now()}",
        f"- accelerator: {accelerator()}; host: {harness.cpu_model()}; load average at start: "
        f"{harness.load_average()}",
        "- versions: " + ", ".join(f"{k} {v[k]}" for k in ("python", "jax", "jaxlib", "torch")),
        f"- XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}"
        + ("; SMOKE RUN (tiny shapes: the numbers mean nothing)" if smoke else ""),
    ]


# ---- sections -----------------------------------------------------------------------------
def section_compile(smoke: bool) -> list[str]:
    import jax

    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        setups = compile_bench.QUICK_SETUPS if smoke else compile_bench.SETUPS
        cells = ["lstm"] if smoke else list(compile_bench.CELLS)
        rows, _ = compile_bench.measure(cells, setups, 1, 3 if smoke else 5)
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
    return ["### Compile and run time per program (benchmarks/compile.py)", "",
            *(f"- {s}" for s in setups), "", *compile_bench.markdown(compile_bench.HEADER, rows)]


def torch_device_contenders(family: str, cfg: Config, x_BTD) -> list[Contender]:
    """torch ``nn.LSTM``/``nn.GRU`` on CUDA (cuDNN) when torch sees a GPU, else its CPU rows
    (:func:`benchmarks.impls.torch_contenders`)."""
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        return torch_contenders(family, cfg, x_BTD)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[family]
    torch.manual_seed(0)
    module = cls(cfg.D, cfg.H).cuda()
    x = torch.tensor(np.asarray(x_BTD).swapaxes(0, 1).copy()).cuda()
    params = list(module.parameters())

    def train():
        ys, _ = module(x)
        out = torch.autograd.grad(ys.square().mean(), params)
        torch.cuda.synchronize()
        return out

    def infer():
        with torch.inference_mode():
            out = module(x)[0]
        torch.cuda.synchronize()
        return out

    return [Contender(f"torch nn.{cls.__name__} (cuDNN)", train, infer)]


def jax_rnn_contenders(family: str, cfg: Config, x_BTD, notes: list[str]) -> list[Contender]:
    """``jax.experimental.rnn.lstm`` (cuDNN through JAX; LSTM only), if it runs here (else a
    line in ``notes`` says why not)."""
    if family != "lstm":
        return []
    import jax
    import jax.numpy as jnp

    try:
        from jax.experimental import rnn

        B, H = cfg.B, cfg.H
        w = rnn.init_lstm_weight(jax.random.key(0), cfg.D, H, 1, False)
        h0 = jnp.zeros((1, B, H), jnp.float32)
        lengths = jnp.full((B,), cfg.T, jnp.int32)

        def apply(w, x):
            return rnn.lstm(x, h0, h0, w, lengths, input_size=cfg.D, hidden_size=H,
                            num_layers=1, dropout=0.0, bidirectional=False)[0]

        train = jax.jit(jax.value_and_grad(lambda w, x: jnp.mean(jnp.square(apply(w, x)))))
        infer = jax.jit(apply)
        jax.block_until_ready(infer(w, x_BTD))  # fails here where it does not run
        jax.block_until_ready(train(w, x_BTD))
    except Exception as e:  # noqa: BLE001 -- "where it runs": a backend without it is a note
        why = " ".join(str(e).split())[:160]
        notes.append(f"jax.experimental.rnn.lstm ({cfg.name}): not run here "
                     f"({type(e).__name__}: {why})")
        return []
    return [Contender("jax.experimental.rnn.lstm",
                      lambda: jax.block_until_ready(train(w, x_BTD)),
                      lambda: jax.block_until_ready(infer(w, x_BTD)))]


def section_cells(smoke: bool) -> list[str]:
    import jax
    import jax.numpy as jnp

    rows, notes = [], []
    for cfg in SMOKE_CELL_CONFIGS if smoke else CELL_CONFIGS:
        for fam in ("lstm", "gru"):
            x = jax.random.normal(jax.random.key(1), (cfg.B, cfg.T, cfg.D), jnp.float32)
            contenders = (lstmjax_contenders(fam, cfg, x, reference=False)
                          + torch_device_contenders(fam, cfg, x)
                          + jax_rnn_contenders(fam, cfg, x, notes))
            for mode in ("train", "infer"):
                times = harness.interleaved({c.name: getattr(c, mode) for c in contenders},
                                            repeats=3 if smoke else 11, warmup=2)
                ours = times["lstmjax"].median
                for name, t in sorted(times.items(), key=lambda kv: kv[1].median):
                    rows.append([f"{fam} {mode}", str(cfg), name, f"{t.ms:.3f}",
                                 f"{t.median / ours:.2f}"])
    return ["### lstm/gru against torch (and jax.experimental.rnn where it runs)", "",
            *compile_bench.markdown(["step", "config", "implementation", "ms (median)",
                                     "x lstmjax time"], rows),
            *(["", *(f"- {n}" for n in notes)] if notes else [])]


def section_seeds(smoke: bool) -> list[str]:
    import jax

    from lstmjax.experiment.job import _init_args, seeds_in_one_program
    from lstmjax.train import make_trainer

    base = compile_bench.QUICK_SETUPS[0] if smoke else compile_bench.SETUPS[0]
    rows, one = [], None
    for n in SMOKE_SEEDS if smoke else SEEDS:
        s = dataclasses.replace(base, seeds=n, steps_per_chunk=min(base.steps_per_chunk, 20))
        cfg = compile_bench.trial_config("lstm", s)
        trainer = make_trainer(cfg)
        state = jax.jit(jax.vmap(trainer.init, in_axes=(0, 0)))(*_init_args(cfg))
        t0 = time.perf_counter()
        chunk = jax.jit(seeds_in_one_program(trainer.chunk)).lower(state).compile()
        compile_s = time.perf_counter() - t0
        t = harness.interleaved({"c": lambda c=chunk, s0=state: jax.block_until_ready(c(s0))},
                                repeats=3 if smoke else 7, warmup=1)["c"]
        one = one or t.median
        rows.append([str(n), f"{compile_s:.2f}", f"{t.ms:.1f}", f"{t.median / one:.2f}",
                     f"{n * s.steps_per_chunk / t.median:.0f}"])
    return [f"### Vmapped seeds: a training chunk ({s.steps_per_chunk} steps, lstm, "
            f"H={base.H}, adding T={base.T}, batch {base.batch}) with n seeds", "",
            *compile_bench.markdown(["seeds", "compile s", "chunk ms", "x one seed's time",
                                     "seed-steps/s"], rows)]


def section_quickstart(smoke: bool, frontier_max: int, timeout_s: float) -> list[str]:
    sets = list(SMOKE_QUICKSTART) if smoke else (
        [f"frontier.max={frontier_max}"] if frontier_max else [])
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="lstmjax-gpu-quickstart-") as tmp:
        cmd = [sys.executable, "-m", "lstmjax", "run", str(root / "configs" / "quickstart.yaml"),
               "--out", str(Path(tmp) / "run"), "--compile-cache", "off", "--progress", "plain"]
        for s in sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                                  timeout=timeout_s)
            outcome = "finished" if proc.returncode == 0 else (
                f"FAILED (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        except subprocess.TimeoutExpired:
            outcome = f"did not finish within {timeout_s:.0f} s"
        wall = time.perf_counter() - t0
    what = ("the smoke quickstart (" + ", ".join(sets) + ")" if smoke else
            f"configs/quickstart.yaml trimmed to frontier.max={frontier_max}" if frontier_max
            else "configs/quickstart.yaml as it is")
    return ["### Quickstart wall time", "",
            f"`lstmjax run` of {what}, `--compile-cache off`, fresh run directory: "
            f"{wall:.1f} s wall, {outcome}."]


# ---- driver ---------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true",
                   default=os.environ.get("LSTMJAX_GPU_SMOKE", "") not in ("", "0"),
                   help="tiny shapes (seconds, any machine); also LSTMJAX_GPU_SMOKE=1")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--quickstart-max", type=int, default=40, metavar="GAP",
                   help="frontier.max of the timed quickstart (0: the config's own, 160)")
    p.add_argument("--quickstart-timeout", type=float, default=200.0, metavar="S")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="seconds the whole run may take: the quickstart gets what is left "
                        "(at most --quickstart-timeout), so its line is written in time")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown block here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    block = Block(args.out, f"## Accelerator run ({accelerator()}), benchmarks/gpu.sh")
    block.add(header(args.smoke))
    t_start = time.perf_counter()
    for name in SECTIONS:
        if name not in args.only:
            continue
        t0 = time.perf_counter()
        if name == "compile":
            lines = section_compile(args.smoke)
        elif name == "cells":
            lines = section_cells(args.smoke)
        elif name == "seeds":
            lines = section_seeds(args.smoke)
        else:
            left = (args.quickstart_timeout if args.budget is None
                    else args.budget - (time.perf_counter() - t_start) - 15)
            lines = section_quickstart(args.smoke, args.quickstart_max,
                                       max(10.0, min(args.quickstart_timeout, left)))
        block.add([*lines, "", f"({name}: {time.perf_counter() - t0:.0f} s)"])
    block.add([f"total {time.perf_counter() - t_start:.0f} s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
