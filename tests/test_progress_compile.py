"""Progress shows compile time: a line per compiled job in every display ("compiling rnn
(length 4) ... 2.3 s"), and `lstmjax run` ends with "compile N s, train M s". Time values are
never asserted, only that they are shown."""

from __future__ import annotations

import io
import re

import pytest

from lstmjax import cli
from lstmjax.experiment.progress import PlainReporter, Reporter, RichReporter

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 1}
output: {plots: false}
"""

SHOWN = re.compile(r"compiling lstm \(length 40\) \.\.\. 4\.1 s")


@pytest.mark.parametrize("make", [PlainReporter, RichReporter], ids=["plain", "rich"])
def test_reporters_show_a_jobs_compile_time(make):
    stream = io.StringIO()
    reporter = make(stream)
    with reporter.compiling("lstm (length 40)") as shown:
        shown.seconds = 4.1
    with pytest.raises(RuntimeError), reporter.compiling("gru (length 5)"):
        raise RuntimeError("the compile failed")  # reported by the executor, not here
    reporter.close()
    text = stream.getvalue()
    assert SHOWN.search(text) and "gru" not in text


def test_the_silent_reporter_shows_no_compile_line(capsys):
    with Reporter().compiling("lstm (length 40)") as shown:
        shown.seconds = 4.1
    assert capsys.readouterr() == ("", "")


def test_lstmjax_run_shows_each_compile_then_compile_and_train_seconds(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    rc = cli.main(["run", str(path), "--out", str(tmp_path / "run"), "--progress", "plain",
                   "--compile-cache", "off"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert re.search(r"^compiling rnn \(length 4\) \.\.\. \d+\.\d s$", err, re.M), err
    assert re.fullmatch(r"compile \d+ s, train \d+ s", out.splitlines()[-1]), out
