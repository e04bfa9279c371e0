"""JAX's persistent compilation cache for lstmjax runs, and a count of what was compiled.

On a CPU an experiment is mostly XLA compiles (benchmarks/RESULTS.md): a second run of the same
config (a new ``--out``, a ``--resume``) compiles the same programs again unless they persist.
:func:`enable` points JAX's persistent cache at ``$XDG_CACHE_HOME/lstmjax/xla/<machine>``
(``~/.cache/...`` without ``XDG_CACHE_HOME``), where ``<machine>`` is the CPU architecture and a
digest of its feature flags and of jaxlib's version: an executable compiled for one instruction
set is never offered to another (a home directory shared by a cluster's nodes). JAX evicts the
least recently used entries beyond :data:`MAX_BYTES`.

It is process-global JAX configuration, so only the entry points call it -- ``lstmjax run`` and
``lj.experiment.run`` -- never ``import lstmjax``. The setting: ``auto`` (default), ``off``, or a
directory; ``lstmjax run --compile-cache`` or the environment variable ``LSTMJAX_COMPILE_CACHE``.
A cache the user already configured for JAX (``JAX_COMPILATION_CACHE_DIR``,
``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is under ``auto``.

:class:`CompileMeter` counts the programs XLA compiled (cache hits excluded) and their seconds,
from JAX's own monitoring events.

:func:`compiler_options` is how hard XLA:CPU optimises each of the experiment's programs (a
per-program option, not global configuration).
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import os
import platform
import threading
from pathlib import Path

ENV = "LSTMJAX_COMPILE_CACHE"
MAX_BYTES = 4 * 2**30

# JAX's monitoring events (jax/_src/dispatch.py, jax/_src/compiler.py): the first spans every
# compile request, served from the persistent cache or not; the second counts the served ones.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/lstmjax/xla`` (``~/.cache/lstmjax/xla`` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstmjax" / "xla"


def machine_tag() -> str:
    """``<arch>-<digest>``: the CPU architecture and a digest of the CPU's feature flags and
    jaxlib's version, naming the cache subdirectory this machine may read."""
    import jaxlib

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):  # x86 / Arm
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:  # not Linux: the processor string is the best we have
        flags = platform.processor()
    text = f"{platform.machine()} {flags} jaxlib {jaxlib.__version__}"
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _setting_text(setting: str | os.PathLike | None) -> str:
    text = str(os.environ.get(ENV) or "auto" if setting is None else setting).strip()
    return text.lower() if text.lower() in ("auto", "off") else text


def resolve(setting: str | os.PathLike | None = None) -> Path | None:
    """The cache directory ``setting`` asks for (None: off). ``None`` reads
    ``LSTMJAX_COMPILE_CACHE`` (default ``auto``); a directory is split by machine as ``auto``."""
    text = _setting_text(setting)
    if text == "off":
        return None
    root = cache_root() if text == "auto" else Path(text).expanduser()
    return root / machine_tag()


def enable(setting: str | os.PathLike | None = None) -> Path | None:
    """Program or API entry: turn JAX's persistent compilation cache on as ``setting`` says
    (see the module docstring) and return its directory, or None when it is off. Every
    compile is cached (no minimum compile time) unless
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. A directory that cannot be
    created is a one-line warning, and the run goes on uncached."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    text = _setting_text(setting)
    configured = jax.config.jax_compilation_cache_dir
    if text == "off":
        return None
    share_across_cpu_devices()
    if text == "auto" and configured:
        return Path(configured)  # the user's own JAX cache
    path = resolve(text)
    if configured == str(path):
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from lstmjax.experiment.rundir import warn

        warn(f"compile cache {path}: {e.strerror or e}; compiling without it "
             f"(--compile-cache DIR or {ENV}=off)")
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ and _has_filelock():
        # (JAX's size-bounded cache locks with `filelock`, a dependency of lstmjax; without
        # it every cache read fails, so the cache is then left unbounded rather than broken)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    compilation_cache.reset_cache()  # a compile before this call must not keep it off
    return path


# XLA:CPU backend (LLVM) optimisation level of the experiment's programs, measured on the
# training chunk (benchmarks/RESULTS.md, "XLA:CPU optimisation level"): level 1 compiles it in
# 0.73-0.85x the default's time and runs it as fast; level 0 halves the initialiser's compile,
# which runs once and then costs under 2 ms.
_LEVEL = {"train": 1, "once": 0}
_LEVEL_FLAG = "xla_backend_optimization_level"


def compiler_options(runs: str = "train") -> dict[str, int]:
    """``compiler_options`` for ``jax.jit``/``Lowered.compile`` of one experiment program:
    ``runs="train"`` for programs called many times (the training chunk, evaluation,
    diagnostics), ``"once"`` for one called once per trial (the initialiser). On a CPU backend
    only, and empty when ``XLA_FLAGS`` already sets the level (the user's choice wins)."""
    import jax

    if _LEVEL_FLAG in os.environ.get("XLA_FLAGS", "") or jax.default_backend() != "cpu":
        return {}
    return {_LEVEL_FLAG: _LEVEL[runs]}


_ON_CPU: contextvars.ContextVar[bool] = contextvars.ContextVar("lstmjax_cpu_key", default=False)


def share_across_cpu_devices() -> bool:
    """Let one CPU device's cached program serve another's: JAX's cache key includes the
    program's device assignment (``cpu:0`` and ``cpu:1`` are two entries) except on GPUs, where
    it is left out and the executable is loaded with the requesting compile's own assignment.
    ``lstmjax run`` splits the CPU into one device per core and a trial trains on whichever
    device comes free, so without this a repeated run compiled again every program that landed
    on the other device (half of them). Process-global: called at the entry points, with
    :func:`enable`. It wraps two private JAX functions (``jax._src.cache_key``); where they are
    not as expected it changes nothing and returns False (the cache then works per device)."""
    try:
        from jax._src import cache_key
    except ImportError:
        return False
    get, hash_options = (getattr(cache_key, "get", None),
                         getattr(cache_key, "_hash_serialized_compile_options", None))
    if get is None or hash_options is None:
        return False
    if getattr(get, "_lstmjax", False):
        return True
    try:
        params = list(inspect.signature(hash_options).parameters)
        backend_at = list(inspect.signature(get).parameters).index("backend")
    except (TypeError, ValueError):
        return False
    if params[-1:] != ["strip_device_assignment"]:
        return False

    def keyed(*args, **kwargs):
        backend = kwargs["backend"] if "backend" in kwargs else args[backend_at]
        token = _ON_CPU.set(getattr(backend, "platform", "") == "cpu")
        try:
            return get(*args, **kwargs)
        finally:
            _ON_CPU.reset(token)

    def options_hashed(hash_obj, compile_options, strip_device_assignment=False):
        return hash_options(hash_obj, compile_options,
                            strip_device_assignment=strip_device_assignment or _ON_CPU.get())

    keyed._lstmjax = True
    cache_key.get, cache_key._hash_serialized_compile_options = keyed, options_hashed
    return True


def _has_filelock() -> bool:
    import importlib.util

    return importlib.util.find_spec("filelock") is not None


class CompileMeter:
    """Counts, while open, the programs XLA compiled in this process (persistent-cache hits
    excluded) and the seconds spent in compile requests (hits included: loading is cheap).

        with CompileMeter() as meter:
            ...
        meter.compiles, meter.seconds
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = 0
        self.hits = 0
        self.seconds = 0.0

    @property
    def compiles(self) -> int:
        return self.requests - self.hits

    def _on_duration(self, event: str, seconds: float, **_) -> None:
        if event == _COMPILE_EVENT:
            with self._lock:
                self.requests += 1
                self.seconds += seconds

    def _on_event(self, event: str, **_) -> None:
        if event == _HIT_EVENT:
            with self._lock:
                self.hits += 1

    def __enter__(self) -> CompileMeter:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_listener(self._on_event)
