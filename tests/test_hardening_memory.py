"""The memory pre-check (issue 23; ``lstmjax.experiment.resources``) covers every program a
trial runs -- the training chunk and the evaluation at each ``eval.lengths`` value -- and the
task's input/output widths (one-hot inputs, logits and their gradients), refusing before
anything is written, in one line. The estimate is checked against XLA's own buffer plan of the
compiled programs (``memory_analysis()``), an independent oracle."""

from __future__ import annotations

import jax
import pytest

import lstmjax as lj
from lstmjax import cli
from lstmjax.experiment import expand, load_config, resources
from lstmjax.experiment.job import compile_trial
from lstmjax.experiment.resources import estimate_bytes
from lstmjax.experiment.trial_run import length_eval_program

TINY = """\
name: mem
task: {name: adding, length: 6}
model: {cell: lstm, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.01, batch_size: 8, steps: 4, eval_every: 2,
        eval_batch_size: 16, seeds: 2, early_stop: false}
output: {progress: none}
"""


def _one_line_refusal(capsys, tmp_path, text, limit, monkeypatch):
    monkeypatch.setattr(resources, "memory_limit_bytes", lambda: limit)
    path = tmp_path / "mem.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    rc = cli.main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith("warning: ")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not out.exists()  # refused before anything was written
    return lines[0]


def test_a_long_eval_length_is_refused_before_training(tmp_path, capsys, monkeypatch):
    # the evaluation at length 20000 (batch 16, 2 seeds, LSTM H=8: 56 activations a step)
    # needs >= 16 * 20000 * 56 * 4 B * 2 = 143 MB; training at length 6 needs < 1 MB. The
    # old check looked at the training length only: it trained, then evaluated
    text = TINY + "eval: {lengths: [6, 20000]}\n"
    path = tmp_path / "m.yaml"
    path.write_text(text)
    trial = expand(load_config(path))[0]
    assert estimate_bytes(trial.cfg) >= 16 * 20_000 * 56 * 4 * 2
    line = _one_line_refusal(capsys, tmp_path, text, 64 * 2**20, monkeypatch)
    assert "the evaluation at eval.lengths 20000 needs about 0.1" in line, line
    assert "but this device has 0.0625 GiB; reduce eval.lengths or eval.batch_size" in line


def test_a_wide_vocabulary_counts_its_one_hot_inputs_and_logits(tmp_path, capsys, monkeypatch):
    # associative_recall, length 1024, vocab 65536, batch 64: one [B, T, V] float32 array is
    # 17.2 GB; XLA allocates 68.8 GB for the training step (inputs, logits, log-softmax and
    # their gradient). The old estimate was 67 MB.
    text = TINY.replace("task: {name: adding, length: 6}",
                        "task: {name: associative_recall, length: 1024, vocab_size: 65536}")
    text = text.replace("batch_size: 8,", "batch_size: 64,").replace("seeds: 2,", "seeds: 1,")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    one = 64 * 1024 * 65536 * 4
    assert 3 * one < estimate_bytes(expand(load_config(path))[0].cfg) < 6 * one
    line = _one_line_refusal(capsys, tmp_path, text, 16 * 2**30, monkeypatch)
    assert "needs about 6" in line and "batch_size 64, length 1024" in line, line
    assert "associative_recall's input/output width 65536/65536" in line, line
    assert "but this device has 16 GiB; reduce one of them" in line, line


def _xla_bytes(compiled) -> int:
    """Peak bytes of a compiled program per XLA's buffer plan: temporaries, arguments and
    outputs (less the outputs that reuse donated arguments)."""
    m = compiled.memory_analysis()
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
            - m.alias_size_in_bytes)


# Small trials whose largest program is each kind the estimate counts: the training chunk of
# a one-layer LSTM (2 seeds vmapped) and of a 2-layer GRU (seeds one after another), a wide
# vocabulary whose one-hot inputs and logits dominate training, or an evaluation at twice the
# length, and an evaluation length 100x the training one. Measured (XLA CPU, estimate / XLA):
# 0.79, 0.86, 1.02, 1.04, 0.79.
ORACLE = {
    "lstm": {"task": {"name": "adding", "length": 50}, "model": {"cell": "lstm", "hidden_size": 32},
             "train": {"batch_size": 16, "eval_batch_size": 64, "seeds": 2}},
    "gru_2_layers": {"task": {"name": "adding", "length": 100},
                     "model": {"cell": "gru", "hidden_size": 32, "num_layers": 2},
                     "train": {"batch_size": 32, "eval_batch_size": 32, "seeds": 2,
                               "vmap_seeds": False}},
    "wide_vocab": {"task": {"name": "associative_recall", "length": 64, "vocab_size": 4096,
                            "n_pairs": 4},
                   "model": {"cell": "lstm", "hidden_size": 16},
                   "train": {"batch_size": 8, "eval_batch_size": 8, "seeds": 1}},
    "wide_vocab_eval": {"task": {"name": "associative_recall", "length": 64, "vocab_size": 4096,
                                 "n_pairs": 4},
                        "model": {"cell": "lstm", "hidden_size": 16},
                        "train": {"batch_size": 4, "eval_batch_size": 32, "seeds": 1},
                        "eval": {"lengths": [128]}},
    "eval_length": {"task": {"name": "adding", "length": 20},
                    "model": {"cell": "lstm", "hidden_size": 16},
                    "train": {"batch_size": 8, "eval_batch_size": 16, "seeds": 2},
                    "eval": {"lengths": [20, 2000], "batch_size": 32}},
}


@pytest.mark.parametrize("name", ORACLE)
def test_the_estimate_is_within_2x_of_what_xla_allocates(name):
    raw = ORACLE[name]
    raw["train"].update(steps=2, eval_every=2)
    trial = expand(lj.experiment.from_dict(raw))[0]
    compiled = compile_trial(trial)
    programs = [_xla_bytes(compiled.chunk)]
    if trial.cfg.eval is not None:
        state = jax.eval_shape(lambda: compiled.init(*compiled.init_args))
        for length in trial.cfg.eval.lengths:
            program = length_eval_program(compiled.trainer, trial.cfg, length)
            programs.append(_xla_bytes(program.lower(state.params, state.key).compile()))
    xla = max(programs)
    estimate = estimate_bytes(trial.cfg)
    assert 0.5 * xla <= estimate <= 2 * xla, (name, estimate, programs)
