"""Orbax checkpoints of a trial's train state, with SHA-256 checksums of their files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from lstmjax._io import atomic_write_json
from lstmjax.experiment.rundir.layout import CHECKSUM_FILE, warn

__all__ = ["Checkpointer"]



class Checkpointer:
    """Orbax checkpoints of a train-state pytree, one directory per step, each with SHA-256
    checksums of its files (``checksums.json`` beside the ``checkpoints/`` directory).

    Saving is synchronous; orbax writes into a temporary directory and renames it when
    complete, so a killed process leaves either a whole checkpoint or a temporary directory
    that is deleted on the next start. :meth:`restore_latest` verifies the checksums and falls
    back to older checkpoints when the newest is damaged.
    """

    def __init__(self, directory: Path, keep: int = 1):
        self.directory = Path(directory).absolute()
        self.sums_path = self.directory.parent / CHECKSUM_FILE
        self.keep = keep
        self._manager = None

    def _mgr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob("*.orbax-checkpoint-tmp*"):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
            extra = {}
            if _several_processes():  # each process checkpoints its own trials, alone
                rank = _rank()
                extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                    primary_host=rank, active_processes={rank},
                    barrier_sync_key_prefix=f"lstmjax-{rank}")
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=self.keep, enable_async_checkpointing=False,
                    create=not extra, **extra,  # (the directory exists: made above)
                ),
            )
        return self._manager

    def latest_step(self) -> int | None:
        if not self.directory.is_dir():
            return None
        return self._mgr().latest_step()

    def steps(self) -> list[int]:
        """Saved steps, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self._mgr().all_steps(), reverse=True)

    def save(self, step: int, state) -> None:
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        if _several_processes():  # host-local arrays: saved as NumPy (orbax refuses them)
            import jax

            state = jax.device_get(state)
        mgr.save(step, args=ocp.args.StandardSave(state), force=True)
        mgr.wait_until_finished()
        sums = {s: v for s, v in self._sums().items() if int(s) in mgr.all_steps()}
        sums[str(step)] = _digest_dir(self.directory / str(step))
        atomic_write_json(self.sums_path, sums)

    def restore(self, step: int, like):
        """The state saved at ``step``, with the structure and dtypes of ``like``."""
        import jax
        import orbax.checkpoint as ocp

        if _several_processes():  # saved as NumPy: restored so, then placed like `like`
            import numpy as np

            host = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
            state = self._mgr().restore(step, args=ocp.args.StandardRestore(host))
            return jax.tree.map(lambda x, ref: jax.device_put(x, ref.sharding), state, like)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._mgr().restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_latest(self, like) -> tuple[int | None, Any]:
        """``(step, state)`` of the newest checkpoint whose checksums match and that restores;
        ``(None, like)`` if there is none (each damaged one named in a warning)."""
        sums = self._sums()
        damaged = []
        for step in self.steps():
            path = self.directory / str(step)
            expected = sums.get(str(step))
            if expected is not None and _digest_dir(path) != expected:
                bad = sorted(k for k, v in _digest_dir(path).items() if expected.get(k) != v)
                bad += sorted(k for k in expected if not (path / k).exists())
                warn(f"{path}: checkpoint damaged ({', '.join(bad[:3]) or 'files changed'} "
                     "differ from their checksums); trying an older one")
                damaged.append(step)
                continue
            try:
                state = self.restore(step, like)
            except Exception as e:  # noqa: BLE001 -- orbax/tensorstore raise many kinds
                warn(f"{path}: checkpoint cannot be read ({type(e).__name__}); "
                     "trying an older one")
                damaged.append(step)
                continue
            self._drop(damaged)  # training from `step` will save those steps again
            return step, state
        return None, like

    def _drop(self, steps: list[int]) -> None:
        for step in steps:
            path = self.directory / str(step)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        if steps:
            self._manager = None  # re-read the remaining steps

    def _sums(self) -> dict:
        try:
            data = json.loads(self.sums_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def clear(self) -> None:
        """Delete this trial's checkpoints (orbax step directories and their temporaries, and
        the checksums) -- nothing else that may be in the directory."""
        self._manager = None
        if self.directory.is_dir():
            for p in self.directory.iterdir():
                ours = p.name.isdigit() or ".orbax-checkpoint-tmp" in p.name
                if ours and p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
        if self.sums_path.is_file():
            self.sums_path.unlink()


def _several_processes() -> bool:
    from lstmjax.experiment.hosts import rank_and_count

    return rank_and_count()[1] > 1


def _rank() -> int:
    from lstmjax.experiment.hosts import rank_and_count

    return rank_and_count()[0]


def _digest_dir(path: Path) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            h = hashlib.sha256()
            with p.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
            out[p.relative_to(path).as_posix()] = h.hexdigest()
    return dict(sorted(out.items()))
