"""Several processes (hosts) on one run directory, through ``jax.distributed``.

Every process of a ``jax.distributed`` job (``lstmjax run CONFIG --coordinator HOST:PORT
--num-processes P --process-id I``, or JAX's own cluster auto-detection) runs the same config
into the same shared run directory:

1. all processes check the config and the directory (nothing is written), then meet;
2. process 0 takes the directory's lock and prepares it, then they meet again;
3. each trains its share of the jobs (a gap frontier: of the variants) on its local devices,
   and, done, writes ``.lstmjax-process-<I>.json`` (its failures);
4. process 0 waits for every process's marker, then returns the whole run (read from the
   directory), and writes ``results.csv``, the report and the plots.

``--resume`` works as for one process: each process skips its finished trials. The meetings
are ``multihost_utils.sync_global_devices`` (on CPU through gloo collectives, which the CLI
turns on); the last wait polls the shared directory, so a long run needs no collective timeout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lstmjax._io import atomic_write_json
from lstmjax.experiment.rundir.layout import PROCESS_MARKER

__all__ = ["rank_and_count", "meet", "marker", "write_done", "wait_for_all", "clear_markers"]

MARKER = PROCESS_MARKER  # (named in lstmjax.experiment.rundir.layout)


def rank_and_count() -> tuple[int, int]:
    """(this process's index, number of processes); (0, 1) without ``jax.distributed``."""
    import jax

    return jax.process_index(), jax.process_count()


def meet(name: str) -> None:
    """Wait until every process gets here (no-op for one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"lstmjax:{name}")


def marker(run_dir: Path, rank: int) -> Path:
    return run_dir / MARKER.format(rank)


def clear_markers(run_dir: Path, rank: int) -> None:
    """Remove this process's marker of an earlier (interrupted) run."""
    path = marker(run_dir, rank)
    if path.is_file() and not path.is_symlink():
        path.unlink()


def write_done(run_dir: Path, rank: int, failures: list[dict]) -> None:
    atomic_write_json(marker(run_dir, rank), {"process": rank, "failed": failures})


def wait_for_all(run_dir: Path, count: int, poll_s: float = 0.5) -> list[dict]:
    """Process 0: wait for the markers of processes 1..count-1; returns their failures and
    removes the markers."""
    failures: list[dict] = []
    for rank in range(1, count):
        path = marker(run_dir, rank)
        while True:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                break
            except (OSError, ValueError):
                time.sleep(poll_s)
        failures += list(data.get("failed", []))
        path.unlink()
    return failures
