"""The gap frontier: the search against fake outcomes with known thresholds, resume making the
same decisions, grouped sweep axes, and a tiny end-to-end frontier run."""

from __future__ import annotations

import csv
import math
import textwrap
from types import SimpleNamespace

import pytest

from lstmjax import cli
from lstmjax.experiment import ConfigError, frontier, load_config, run


def _fc(**kw):
    base = dict(start=5, max=2000, factor=2.0, resolution=0.1, min_solved=0.5)
    return SimpleNamespace(**{**base, **kw})


def _threshold(t):
    return lambda gap: 1.0 if gap <= t else 0.0


@pytest.mark.parametrize("threshold", [5, 6, 9, 137, 1000, 1999])
def test_search_finds_a_known_threshold_to_the_resolution(threshold):
    fc = _fc()
    r = frontier.search(fc, _threshold(threshold))
    assert r.complete
    assert r.largest_solved <= threshold < r.smallest_unsolved
    gap = r.smallest_unsolved - r.largest_solved
    assert gap == 1 or gap / r.largest_solved <= fc.resolution
    # doubling from 5 reaches 2000 in ceil(log2(400)) + 1 probes; geometric bisection halves
    # log(hi/lo) (at most log 2) until it is below log(1 + resolution)
    doubling = math.ceil(math.log2(fc.max / fc.start)) + 1
    bisect = math.ceil(math.log2(math.log(2) / math.log(1 + fc.resolution))) + 1
    assert len(r.probes) <= doubling + bisect
    assert len(set(r.probes)) == len(r.probes)  # never the same gap twice


def test_search_never_solved_and_solved_up_to_max():
    never = frontier.search(_fc(), lambda g: 0.0)
    assert (never.largest_solved, never.smallest_unsolved, never.probes) == (None, 5, (5,))
    always = frontier.search(_fc(), lambda g: 1.0)
    assert always.largest_solved == 2000 and always.smallest_unsolved is None
    assert always.probes[-1] == 2000 and list(always.probes) == sorted(always.probes)


def test_min_solved_is_a_fraction_of_seeds():
    fc = _fc(min_solved=2 / 3)
    r = frontier.search(fc, lambda g: 2 / 3 if g <= 40 else 1 / 3)
    assert r.largest_solved <= 40 < r.smallest_unsolved


def test_a_resumed_search_makes_the_same_decisions():
    """From any prefix of a finished search's outcomes, plan() asks for the next probe of the
    uninterrupted search -- so a resumed run reuses finished probes and continues identically."""
    fc = _fc()
    outcome = _threshold(137)
    full = frontier.search(fc, outcome)
    for n in range(len(full.probes)):
        known = {g: outcome(g) for g in full.probes[:n]}
        gap, partial = frontier.plan(fc, known)
        assert gap == full.probes[n] and not partial.complete
    assert frontier.plan(fc, {g: outcome(g) for g in full.probes}) == (None, full)


# ---- config ------------------------------------------------------------------------------------

BASE = """\
name: fr
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.01, batch_size: 16, steps: 100, eval_every: 50,
        eval_batch_size: 64, seeds: 2}
output: {progress: none}
"""


def _load(tmp_path, extra: str, overrides=()):
    path = tmp_path / "fr.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return load_config(path, list(overrides))


@pytest.mark.parametrize("extra,expected", [
    ("frontier: {start: 50, max: 10}\n", "frontier.start: 50 must be smaller than frontier.max"),
    ("frontier: {max: 64}\nsweep: {task.length: [4, 8]}\n",
     "frontier.key: task.length is also swept"),
    ("frontier: {key: length}\n", "frontier.key: 'length' must be a dotted key"),
    ("frontier: {start: 1, max: 64}\n", "frontier.start: task.length=1:"),
    ("frontier: {strat: 4}\n", "frontier.strat: unknown key (did you mean frontier.start?)"),
    ("sweep: {variant: [{model.cell: lstn}]}\n",
     "sweep.variant[0].model.cell: unknown cell 'lstn' (did you mean lstm?)"),
    ("sweep: {variant: [{model.cel: lstm}]}\n", "sweep.variant[0].model.cel: unknown key"),
    ("sweep: {variant: [{name: a, model.cell: lstm}, {name: a, model.cell: gru}]}\n",
     "sweep.variant: 'a' is listed twice"),
    ("sweep: {variant: [{train.learning_rate: -1}]}\n",
     "sweep.variant[0].train.learning_rate: expected a number > 0.0, got -1"),
])
def test_frontier_and_grouped_axes_are_validated(tmp_path, extra, expected):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, extra)
    assert expected in str(e.value)


def test_grouped_axis_sets_keys_together(tmp_path):
    from lstmjax.experiment import expand

    cfg = _load(tmp_path, "sweep: {variant: [{name: slow-rnn, model.cell: rnn, "
                          "train.learning_rate: 0.001}, {model.cell: gru}], task.length: [4, 6]}\n")
    trials = expand(cfg)
    assert [t.name for t in trials] == [
        "variant-slow-rnn__length-4", "variant-slow-rnn__length-6",
        "variant-model.cell=gru__length-4", "variant-model.cell=gru__length-6",
    ]
    assert (trials[0].cfg.model.cell, trials[0].cfg.train.learning_rate) == ("rnn", 0.001)
    assert (trials[2].cfg.model.cell, trials[2].cfg.train.learning_rate) == ("gru", 0.01)
    assert trials[0].variant == "slow-rnn"
    assert trials[0].assignment == {"model.cell": "rnn", "train.learning_rate": 0.001,
                                    "task.length": 4}


# ---- end to end ----------------------------------------------------------------------------------


def test_frontier_run_writes_the_frontier_and_resumes_without_training(tmp_path, capsys):
    extra = ("frontier: {start: 4, max: 32, factor: 4, resolution: 0.5}\n"
             "sweep: {variant: [{name: rnn, model.cell: rnn}, "
             "{name: gru, model.cell: gru, train.learning_rate: 0.02}]}\n")
    cfg = _load(tmp_path, extra)
    out = tmp_path / "run"
    result = run(cfg, out_dir=out)
    rows = {r["variant"]: r for r in result["frontier"]}
    assert set(rows) == {"rnn", "gru"}
    on_disk = list(csv.DictReader((out / "frontier.csv").open()))
    assert [r["variant"] for r in on_disk] == ["rnn", "gru"]
    for r in on_disk:
        assert set(r) >= {"variant", "largest_solved", "smallest_unsolved", "probes"}
        assert int(r["probes"]) == len(r["probed"].split())
        # the probes' own summaries say the same as the frontier
        for gap in map(int, r["probed"].split()):
            name = f"variant-{r['variant']}__length-{gap}"
            assert (out / name / "summary.json").exists(), name
    report = (out / "report.md").read_text()
    assert report.index("## Largest gap solved") < report.index("## Solved fraction by gap")
    assert "**Finding.**" in report.splitlines()[2]
    assert (out / "plots" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    trial_dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    rc = cli.main(["run", str(tmp_path / "fr.yaml"), "--out", str(out), "--resume"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == trial_dirs
    assert {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")} == mtimes
    assert "Largest gap solved" not in capsys.readouterr().err
