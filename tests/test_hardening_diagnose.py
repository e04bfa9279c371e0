"""`lstmjax diagnose RUN` on a run that recorded diagnostics during training (issue 23): it
adds what a trial lacks and never drops or duplicates a recorded line, recomputes nothing
that is recorded, prints a line per trial, and an interrupt leaves each file whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lstmjax import cli
from lstmjax.experiment import load_config, run

# one trial, 2 seeds, diagnostics at 0, 20 and 40; one checkpoint (step 40)
TINY = """\
name: dgm
task: {name: adding, length: 6}
model: {cell: lstm, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.01, batch_size: 8, steps: 40, eval_every: 10,
        eval_batch_size: 16, seeds: 2, early_stop: false}
output: {checkpoint_every: 40, progress: none}
diagnostics: {every: 20}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dgm")
    (tmp / "dgm.yaml").write_text(TINY)
    run(load_config(tmp / "dgm.yaml"), out_dir=tmp / "run", report=False)
    path = tmp / "run" / "default" / "diagnostics.jsonl"
    return tmp / "run", path, path.read_text()


def _keys(text):
    return [(d["step"], d["seed"]) for d in map(json.loads, text.splitlines())]


def test_diagnose_keeps_every_recorded_line_and_adds_none_twice(trained, capsys):
    run_dir, path, original = trained
    assert _keys(original) == [(s, seed) for s in (0, 20, 40) for seed in (0, 1)]
    path.write_text(original)
    assert cli.main(["diagnose", str(run_dir)]) == 0
    # every step of every seed was recorded in training: the file is left as it was (the
    # old diagnose replaced it by steps 0 and 40 only, dropping step 20)
    assert path.read_text() == original
    err = capsys.readouterr().err
    assert "diagnose 1/1 default: nothing new" in err, err

    # lines lost (e.g. a run trained before diagnostics.every was set): only those are added
    kept = [ln for ln in original.splitlines(keepends=True) if json.loads(ln)["step"] != 0]
    path.write_text("".join(kept))
    assert cli.main(["diagnose", str(run_dir)]) == 0
    assert "diagnose 1/1 default: 1 new step" in capsys.readouterr().err
    after = path.read_text()
    assert _keys(after) == _keys(original)  # step order, each (step, seed) once
    assert all(line in after.splitlines(keepends=True) for line in kept)  # untouched
    for old, new in zip(original.splitlines()[:2], after.splitlines()[:2], strict=True):
        old, new = json.loads(old), json.loads(new)  # recomputed at init: the same numbers
        np.testing.assert_allclose(new["gradient_flow"]["log10_gain"],
                                   old["gradient_flow"]["log10_gain"], atol=2e-4)
    # a second diagnose finds nothing to add
    assert cli.main(["diagnose", str(run_dir)]) == 0
    assert path.read_text() == after
    assert "nothing new" in capsys.readouterr().err


def test_an_interrupted_diagnose_leaves_the_file_whole(trained, monkeypatch):
    from lstmjax.experiment import diagnose

    run_dir, path, original = trained
    partial = "".join(ln for ln in original.splitlines(keepends=True)
                      if json.loads(ln)["step"] != 40)
    path.write_text(partial)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(diagnose.Diagnoser, "lines", interrupted)
    with pytest.raises(KeyboardInterrupt):
        diagnose.diagnose_run(run_dir)
    assert path.read_text() == partial
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_diagnose_leaves_a_damaged_file_alone(trained, capsys):
    run_dir, path, original = trained
    damaged = original.replace('"step": 20', '"step": "twenty"', 1)
    path.write_text(damaged)
    assert cli.main(["diagnose", str(run_dir)]) == 0
    assert path.read_text() == damaged  # rewriting would drop the lines after the damage
    assert "damaged at line 3" in capsys.readouterr().err
