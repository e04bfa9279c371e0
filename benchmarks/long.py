"""Long sequences: train-step time and peak memory at B=16, H=64, D=2, T up to 100k.

``python -m benchmarks.run --long [--only lstm|gru ...] [--long-lengths T ...]`` (opt-in:
neither ``make bench`` nor the ``--quick`` CI run includes it). Each row runs in **its own
subprocess** (``python -m benchmarks.long --row SPEC``), so its peak memory is that
process's peak resident set size (``VmHWM`` in ``/proc/self/status``): over its whole life
(imports, compile and steps), and during the timed steps alone (the peak reset after the
compile, less the resident set the steps start from: the train step's working memory).
Rows run one after another, not interleaved: compare the rows of one run, on a quiet machine.

Contenders per family and T: ``lstmjax`` (fast path) without and with ``remat`` (``"auto"``:
K = round(sqrt(T)) unless ``--long-remat`` says otherwise), torch (``nn.LSTM``/``nn.GRU``,
1 thread: the fastest torch on the 2-core machine, see ``RESULTS.md``) and Flax
(``OptimizedLSTMCell`` / ``GRUCell`` under ``nn.RNN``). A train step is as in
:mod:`benchmarks.impls`: value and gradient of ``mean(ys**2)`` w.r.t. all weights. A row that
fails (out of memory, over ``--long-timeout``) says so instead of a time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

B, D, H = 16, 2, 64
LENGTHS = (1_000, 4_000, 16_000, 64_000, 100_000)
QUICK_LENGTHS = (100,)
FAMILIES = ("lstm", "gru")
IMPLS = ("lstmjax", "torch", "flax")
TAG = "RESULT "


def _status_mb(field: str) -> float | None:
    """``field`` (``VmHWM``, ``VmRSS``) of ``/proc/self/status`` in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _peak_mb() -> float:
    """Peak resident set size of this process, MB: Linux's ``VmHWM`` (the peak of this
    program's own address space; ``ru_maxrss`` would also count the parent's RSS at the fork
    before ``exec``), else ``ru_maxrss``."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> float | None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); that RSS in MB, or None
    if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def _median_ms(fn, repeats: int, budget_s: float) -> tuple[float, int]:
    """Median ms of ``fn()`` over ``repeats`` calls (fewer, at least 3, if over ``budget_s``)."""
    t0 = time.perf_counter()
    fn()  # warm-up
    first = time.perf_counter() - t0
    n = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return 1e3 * samples[len(samples) // 2], n


# ---- one row (in the child process) ----------------------------------------------------
def _jax_step(spec):
    """``(blocking train step, compile seconds, XLA temp MB)``."""
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.key(1), (B, spec["T"], D), jnp.float32)
    if spec["impl"] == "lstmjax":
        import lstmjax as lj

        cell = lj.cells.make(spec["family"], H)
        params = cell.init(jax.random.key(0), D)
        remat = spec["remat"]

        def apply(p, x):
            return lj.scan(cell, p, x, remat=remat)[0]
    else:
        from flax import linen as nn

        cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[spec["family"]]
        model = nn.RNN(cls(features=H))
        params = model.init(jax.random.key(0), x)
        apply = model.apply
    step = jax.jit(jax.value_and_grad(lambda p, x: jnp.mean(jnp.square(apply(p, x)))))
    t0 = time.perf_counter()
    compiled = step.lower(params, x).compile()
    compile_s = time.perf_counter() - t0
    temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
    return (lambda: jax.block_until_ready(compiled(params, x))), compile_s, temp


def _torch_step(spec):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec["family"]](D, H)
    x = torch.tensor(np.random.default_rng(1).normal(size=(spec["T"], B, D)).astype(np.float32))
    params = list(module.parameters())

    def train():
        ys, _ = module(x)
        return torch.autograd.grad(ys.square().mean(), params)

    return train, None, None


def run_row(spec) -> dict:
    """Time one train step; the peak RSS of this process is the row's memory: over its
    whole life, and during the steps alone above the RSS they start from."""
    fn, compile_s, temp = (_torch_step if spec["impl"] == "torch" else _jax_step)(spec)
    before = _peak_mb()  # imports, inputs, parameters, compile
    resting = _reset_peak()
    ms, n = _median_ms(fn, spec["repeats"], spec["budget_s"])
    steps = _peak_mb()
    return {"ms": ms, "repeats": n, "compile_s": compile_s, "xla_temp_mb": temp,
            "peak_rss_mb": max(before, steps),
            "step_rss_mb": None if resting is None else steps - resting}


# ---- the section (in the parent) --------------------------------------------------------
def _name(family: str, impl: str, remat) -> str:
    if impl == "lstmjax":
        return "lstmjax" if remat is None else f"lstmjax remat={remat}"
    if impl == "torch":
        return f"torch nn.{family.upper()} (1 thread)"
    return "flax " + {"lstm": "OptimizedLSTMCell", "gru": "GRUCell"}[family]


# lstmjax._allocator.keep_freed_memory()'s settings, as glibc reads them at process start
# (so a torch row need not import lstmjax, and so jax, to get them)
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
                "MALLOC_ARENA_MAX": "1"}


def spawn(spec, timeout_s: float, malloc: str = "tuned") -> dict:
    """Run one row in a fresh ``python -m benchmarks.long --row`` process (``malloc``:
    ``tuned`` as the rest of the benchmarks, or ``default`` glibc)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if malloc == "tuned":
        env.update(TUNED_MALLOC)
    cmd = [sys.executable, "-m", "benchmarks.long", "--row", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"over the {timeout_s:g} s row timeout"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(TAG)]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1][len(TAG):])
    why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
    tail = (done.stderr.strip().splitlines() or [""])[-1][:160]
    return {"error": f"{why}: {tail}" if tail else why}


def _fmt(v, digits=1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def run_section(rep, families, lengths, remats, repeats: int, malloc: str, timeout_s: float,
                budget_s: float = 60.0):
    """One table per family: a row per (T, contender), each from its own subprocess."""
    for family in families:
        rep.section(f"{family} train, long sequences (B={B}, D={D}, H={H}; "
                    f"one subprocess per row)")
        rows = []
        for T in lengths:
            contenders = [("lstmjax", r) for r in (None, *remats)]
            contenders += [("torch", None), ("flax", None)]
            results = {}
            for impl, remat in contenders:
                spec = {"family": family, "impl": impl, "T": T, "remat": remat,
                        "repeats": repeats, "budget_s": budget_s}
                print(f"  running {_name(family, impl, remat)} at T={T} ...", flush=True)
                results[(impl, remat)] = spawn(spec, timeout_s, malloc)
            ours = results[("lstmjax", None)].get("ms")
            for (impl, remat), res in results.items():
                name = _name(family, impl, remat)
                if "error" in res:
                    rows.append([name, T, f"failed: {res['error']}", "", "", "", "", ""])
                    continue
                ratio = f"{res['ms'] / ours:.2f}" if ours else "n/a"
                rows.append([
                    name, T, _fmt(res["ms"]), ratio, _fmt(res["compile_s"], 2),
                    _fmt(res["peak_rss_mb"], 0), _fmt(res["step_rss_mb"], 0),
                    _fmt(res["xla_temp_mb"], 1),
                ])
        rep.table(["implementation", "T", "train step ms (median)", "x lstmjax time",
                   "compile s", "peak RSS MB (own subprocess)", "step peak RSS above resting MB",
                   "XLA temp MB"], rows)
    rep.note("Peak RSS: `VmHWM` of the row's own process over its life (imports, data, "
             "compile, the timed steps); step peak: `VmHWM` reset (`clear_refs`) after the "
             "compile, peak during the timed steps minus the RSS they started from. "
             "XLA temp: the compiled program's temporary buffers (`memory_analysis`), JAX rows "
             "only. Rows are not interleaved: compare within one run.")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--row":
        print("usage: python -m benchmarks.long --row SPEC_JSON (see benchmarks.run --long)",
              file=sys.stderr)
        return 2
    print(TAG + json.dumps(run_row(json.loads(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
