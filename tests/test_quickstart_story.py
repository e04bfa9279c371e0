"""The default job tells the story (slow: `make test-all`): on the quickstart's frontier the
tanh RNN's largest solved gap is smaller than the LSTM's and the GRU's."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstmjax.experiment import load_config, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_rnn_breaks_before_the_gated_cells(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml",
                      ["output.progress=none", "output.plots=false"])
    result = run(cfg, out_dir=tmp_path / "qs")
    largest = {r["variant"]: r["largest_solved"] for r in result["frontier"]}
    assert set(largest) == {"rnn", "lstm", "gru"}
    assert all(r["complete"] for r in result["frontier"])
    rnn = largest["rnn"] or 0
    assert largest["lstm"] is not None and largest["lstm"] > rnn
    assert largest["gru"] is not None and largest["gru"] > rnn
