"""XLA:CPU's older emitters for the suite's small programs: at the suite's optimisation level 0
they compile ~2.5x faster (``--xla_cpu_use_fusion_emitters=false``). Used where nothing is
compared bit for bit across programs: by subprocesses (``conftest.py``) and by the float64
parity programs that hold both sides of their comparison (:func:`jit`)."""

from __future__ import annotations

import functools
import inspect
import mmap
import os
from pathlib import Path

FLAG = "xla_cpu_use_fusion_emitters"


@functools.cache
def knows_flag() -> bool:
    """Whether this jaxlib has the flag (an unknown flag in ``XLA_FLAGS`` aborts the process,
    an unknown compile option fails the compile), looked up in its libraries."""
    import jaxlib

    for lib in Path(jaxlib.__file__).parent.glob("*.so"):
        try:
            with lib.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if m.find(FLAG.encode()) >= 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


def enabled() -> bool:
    """Off with ``LSTMJAX_TEST_XLA_OPT=default`` (XLA as users get it) or an older jaxlib."""
    return os.environ.get("LSTMJAX_TEST_XLA_OPT", "0") != "default" and knows_flag()


def subprocess_flag() -> str | None:
    """The ``XLA_FLAGS`` entry that turns the older emitters on, or None."""
    return f"--{FLAG}=false" if enabled() else None


def jit(fn, **kwargs):
    """``jax.jit`` compiled with the older emitters on CPU where this JAX can say so."""
    import jax

    if (enabled() and jax.default_backend() == "cpu"
            and "compiler_options" in inspect.signature(jax.jit).parameters):
        kwargs.setdefault("compiler_options", {FLAG: False})
    return jax.jit(fn, **kwargs)
