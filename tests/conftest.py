"""Shared pytest fixtures. Keep this file small: add only fixtures used by several test files."""

from __future__ import annotations

import os

# Process-global, so set here, before JAX initialises (subprocess tests inherit it): the suite
# compiles hundreds of small programs and runs each for a few steps, so XLA's backend
# optimisation passes cost far more than they save (a training chunk compiles ~10x faster at
# level 0 and runs ~7x slower). Numerics are unchanged in kind (parity tests keep their
# tolerances). `LSTMJAX_TEST_XLA_OPT=default` keeps XLA's default; the slow tests that time or
# train for long set their own environment.
# pytest-xdist (`make test` runs the suite in one worker process per core) starts its workers
# from the controller process, which imported this file first and changed the environment
# below: each process starts from the XLA_FLAGS the suite was given.
_GIVEN = "LSTMJAX_TEST_GIVEN_XLA_FLAGS"
if _GIVEN in os.environ:
    os.environ["XLA_FLAGS"] = os.environ[_GIVEN]
else:
    os.environ[_GIVEN] = os.environ.get("XLA_FLAGS", "")
if os.environ.get("LSTMJAX_TEST_XLA_OPT", "0") != "default":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

# One XLA compilation cache for the whole session, subprocesses and xdist workers included: many
# tests build the same tiny programs (the same cell on the same task), and a cache hit skips the
# compile. (The controller, which imports this file first, creates it and removes it at exit.)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="lstmjax-test-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402
from _xla import subprocess_flag  # noqa: E402

# Start JAX's backends now, with one CPU device: an in-process `cli.main(["run", ...])` would
# otherwise split the CPU into one device per core (program entry) if it ran first, and the
# rest of the session would run on two devices. Tests that need several devices use
# subprocesses.
jax.devices()


# Subprocesses only (XLA reads XLA_FLAGS once, when this process's backend started above):
# the subprocess tests (several processes, two devices, plugins, a full disk, the README and
# notebooks) each compile their tiny programs cold, and XLA:CPU's older emitters compile them
# ~2.5x faster at level 0 (tests/_xla.py). Not in this process: a few tests here assert
# bit-identical metrics between differently batched programs, which holds with the default
# emitters only. A subprocess whose numbers are compared with this process's drops it
# (`in_process_env`).
_IN_PROCESS_XLA_FLAGS = os.environ.get("XLA_FLAGS")
if _flag := subprocess_flag():
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()


@pytest.fixture
def in_process_env():
    """The environment for a subprocess whose numbers are compared bit for bit with this
    process's: this process's ``XLA_FLAGS`` (the default XLA:CPU emitters)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if _IN_PROCESS_XLA_FLAGS is not None:
        env["XLA_FLAGS"] = _IN_PROCESS_XLA_FLAGS
    return env


@pytest.fixture
def x64():
    """Enable ``jax_enable_x64`` for one test and restore the previous value afterwards."""
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
