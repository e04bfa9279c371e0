"""Length generalisation (eval.lengths): every trained trial evaluated at other gaps, recorded
in summary.json, tabled and plotted by the report; bad lengths are one-line config errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lstmjax.experiment import ConfigError, load_config, run

TINY = """\
name: ev
task: {name: adding, length: 6}
model: {cell: gru, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.02, batch_size: 16, steps: 60, eval_every: 30,
        eval_batch_size: 32, seeds: 2, early_stop: false}
eval: {lengths: [4, 6, 12]}
output: {progress: none}
"""


def _load(tmp_path, text=TINY, overrides=()):
    path = tmp_path / "ev.yaml"
    path.write_text(text)
    return load_config(path, list(overrides))


@pytest.mark.slow
def test_trained_trials_are_evaluated_at_other_lengths(tmp_path):
    cfg = _load(tmp_path)
    out = tmp_path / "run"
    run(cfg, out_dir=out)
    summary = json.loads((out / "default" / "summary.json").read_text())
    entries = summary["length_eval"]
    assert [e["length"] for e in entries] == [4, 6, 12]
    assert [e["trained"] for e in entries] == [False, True, False]
    assert all(len(e["accuracy"]) == 2 and len(e["solved"]) == 2 for e in entries)
    # an independent path through the public API: restore the final parameters and evaluate
    from lstmjax import tasks
    from lstmjax.experiment.rundir import Checkpointer
    from lstmjax.train import make_trainer

    trainer = make_trainer(cfg)
    keys = jax.numpy.stack([jax.random.PRNGKey(s) for s in cfg.train.seeds])
    like = jax.vmap(trainer.init, in_axes=(0, None))(keys, jax.numpy.float32(0.02))
    step, state = Checkpointer(out / "default" / "checkpoints").restore_latest(like)
    assert step == 60
    task = tasks.make("adding", length=12)
    for i in range(2):
        params = jax.tree.map(lambda x, i=i: x[i], state.params)
        batch = task.sample(jax.random.fold_in(state.key[i], 4), 32)
        outputs = trainer.model.apply(params, batch.inputs, batch.lengths, None, True)
        m = task.evaluate(outputs, batch)
        np.testing.assert_allclose(entries[2]["loss"][i], float(m["loss"]), rtol=1e-5)
        np.testing.assert_allclose(entries[2]["accuracy"][i], float(m["accuracy"]), rtol=1e-6)
    report = (out / "report.md").read_text()
    assert "## Length generalisation" in report and "| gap 4 | gap 6 | gap 12 |" in report
    assert (out / "plots" / "length_generalisation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("lengths,expected", [
    ("[1]", "eval.lengths: 1: adding: length=1 is out of range"),
    ("[4, 4]", "eval.lengths: [4, 4] lists a length twice"),
    ("[0]", "eval.lengths: expected integers in [1, 10000000], got 0"),
])
def test_bad_evaluation_lengths_are_config_errors(tmp_path, lengths, expected):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, overrides=[f"eval.lengths={lengths}"])
    assert expected in str(e.value)
