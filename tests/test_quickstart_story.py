"""The default job tells the story (slow: `make test-all`): on the quickstart's frontier the
tanh RNN's largest solved gap is smaller than the LSTM's and the GRU's. Run as `make run` runs
it -- the CLI in its own process, with its own XLA settings (not the suite's compile-fast
level 0, which would make this long run several times slower)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_rnn_breaks_before_the_gated_cells(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "lstmjax", "run", "configs/quickstart.yaml", "--out",
         str(tmp_path / "qs"), "--set", "output.progress=none", "--set", "output.plots=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (tmp_path / "qs" / "frontier.csv").open() as f:
        rows = list(csv.DictReader(f))
    largest = {r["variant"]: int(r["largest_solved"]) if r["largest_solved"] else None
               for r in rows}
    assert set(largest) == {"rnn", "lstm", "gru"}
    assert all(r["complete"] == "True" for r in rows)
    rnn = largest["rnn"] or 0
    assert largest["lstm"] is not None and largest["lstm"] > rnn
    assert largest["gru"] is not None and largest["gru"] > rnn
    assert "largest gap solved" in proc.stdout  # the frontier table, printed
    # the rnn's boundary is classified by evidence, and the Finding says it in those words
    boundary = {r["variant"]: r["boundary"] for r in rows}
    assert boundary["rnn"] in ("stuck", "budget_limited")
    word = {"stuck": "is stuck at", "budget_limited": "budget-limited"}[boundary["rnn"]]
    assert word in proc.stdout
    for cell in ("lstm", "gru"):
        assert boundary[cell] in ("stuck", "budget_limited", "not_reached")
