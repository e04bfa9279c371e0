"""A fake run directory for report tests: the config as ``lstmjax run`` writes it, no trials."""

from __future__ import annotations

import textwrap
from pathlib import Path

from lstmjax.experiment import load_config
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import CONFIG_FILE, write_config


def new_run_dir(tmp_path: Path, text: str):
    """``(cfg, run_dir)``: ``text`` (a YAML config) loaded, and ``tmp_path/run`` made with its
    ``config.yaml``; the caller writes the trials."""
    path = tmp_path / "fake.yaml"
    path.write_text(textwrap.dedent(text))
    cfg = load_config(path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir / CONFIG_FILE, to_dict(cfg))
    return cfg, run_dir
