"""Timing and machine facts shared by the benchmarks.

Everything is measured in one process and *interleaved*: each repeat runs every
contender once, round-robin, so load from other processes hits all of them
alike; we report the median over repeats (after warm-up) and ratios of medians.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: median over repeats, plus the spread (min, max)."""

    median: float
    low: float
    high: float
    repeats: int

    @property
    def ms(self) -> float:
        return 1e3 * self.median


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                budget_s: float = 30.0) -> dict[str, Timing]:
    """Time every ``fn()`` (which must block until its result is ready), round-robin.

    A contender whose warm-up call shows it would need more than ``budget_s`` for
    ``repeats`` calls is timed fewer times (at least 3): it still runs interleaved
    with the others, in the first rounds.
    """
    plan = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            t0 = time.perf_counter()
            fn()
            last = time.perf_counter() - t0
        plan[name] = max(3, min(repeats, int(budget_s / max(last, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            if r < plan[name]:
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {
        name: Timing(statistics.median(s), min(s), max(s), len(s)) for name, s in samples.items()
    }


def wall(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (e.g. a compile)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_model() -> str:
    """``lscpu``'s model name and the core count, or what ``platform`` knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        pairs = (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        fields = {k.strip(): v.strip() for k, v in pairs}
        model = fields.get("Model name", platform.processor() or "unknown CPU")
    except (OSError, subprocess.SubprocessError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, {vector_isa()}"


def vector_isa() -> str:
    """The widest float vector extensions the CPU reports (``/proc/cpuinfo`` flags): what
    bounds a core's matmul rate (AVX2: 2 x 8-wide FMA per cycle; AVX-512: 2 x 16-wide) and
    whether bfloat16 has hardware dot products (``avx512_bf16``, ``amx_bf16``)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return "ISA unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    have = [w for w in wanted if w in flags]
    return "+".join(have) if have else "no AVX2"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> dict[str, str]:
    import importlib

    out = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "flax", "equinox", "torch", "numpy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - an absent optional library is just not listed
            out[mod] = "not installed"
    return out


def now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
