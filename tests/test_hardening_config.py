"""Config hardening (issue 23): trial directory names that collide, grids too large to expand,
random ranges that cannot give num_trials distinct points or overflow float64, and unknown-key
messages that list what is accepted and suggest the closest key. Every refusal is one line
from ``lstmjax run`` (exit 2) before anything is expanded, trained or written."""

from __future__ import annotations

import textwrap

import pytest

import lstmjax.experiment
from lstmjax import cli
from lstmjax.experiment import load_config, space

BASE = """\
name: hc
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 1}
output: {progress: none}
"""


def _write(tmp_path, extra: str = ""):
    path = tmp_path / "hc.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return path


def _no(what):
    def fail(*a, **k):
        raise AssertionError(f"{what} before the config was refused")
    return fail


@pytest.fixture
def refused(tmp_path, capsys, monkeypatch):
    """``refused(extra, *overrides)``: the one-line error of ``lstmjax run`` (exit 2), after
    checking that nothing was written. Training fails the test outright: the refusal must come
    before it."""
    monkeypatch.setattr(lstmjax.experiment, "run", _no("training started"))

    def run(extra: str, *overrides: str) -> str:
        path = _write(tmp_path, extra)
        out = tmp_path / "run"
        argv = ["run", str(path), "--out", str(out)]
        for o in overrides:
            argv += ["--set", o]
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        assert not out.exists()
        return err.removeprefix("error: ").rstrip("\n")

    return run


# ---- 1. names that map to one directory ----------------------------------------------------


def test_frontier_variants_whose_names_slug_alike_are_refused(refused):
    # 'a/b' and 'a-b' both become variant-a-b: every probe of one would overwrite the other's
    err = refused("frontier: {start: 5, max: 20}\n"
                  "sweep: {variant: [{name: a/b, model.cell: rnn}, "
                  "{name: a-b, model.cell: gru}]}\n")
    assert err.startswith("sweep.variant: 'a/b' (sweep.variant[0]) and 'a-b' (sweep.variant[1])")
    assert "'variant-a-b__length-5'" in err
    assert "rename or change one of them" in err


def test_grid_values_whose_names_slug_alike_are_refused(refused):
    err = refused("sweep: {model.cell: [rnn, gru], "
                  "x: [{name: a/b, train.learning_rate: 0.1}, {name: a-b, train.steps: 10}]}\n")
    assert err.startswith("sweep.x: 'a/b' (sweep.x[0]) and 'a-b' (sweep.x[1]) both map to the "
                          "trial directory name 'cell-rnn__x-a-b'")


def test_grid_values_that_print_alike_are_refused(refused):
    # used to run as learning_rate-0.1 and learning_rate-0.1__1
    err = refused("sweep: {train.learning_rate: [0.1, '0.1']}\n")
    assert "sweep.train.learning_rate: 0.1" in err and "'0.1'" in err
    assert "'learning_rate-0.1' (they print alike)" in err


def test_random_choices_whose_names_slug_alike_are_refused(refused):
    err = refused("sweep: {method: random, num_trials: 3, train.learning_rate: "
                  "{uniform: [0.01, 0.1]}, v: {choice: [{name: x/y, model.cell: rnn}, "
                  "{name: x-y, model.cell: gru}]}}\n")
    assert err.startswith("sweep.v: 'x/y' (sweep.v.choice[0]) and 'x-y' (sweep.v.choice[1])")


def test_distinct_names_still_load(tmp_path):
    from lstmjax.experiment import expand

    cfg = load_config(_write(tmp_path, "sweep: {v: [{name: a/b, model.cell: rnn}, "
                                       "{name: a+b, model.cell: gru}]}\n"))
    assert [t.name for t in expand(cfg)] == ["v-a-b", "v-a+b"]


# ---- 2. grid size --------------------------------------------------------------------------


def test_a_grid_of_a_million_trials_is_refused_before_expanding(refused, monkeypatch):
    monkeypatch.setattr(space.SearchSpace, "grid", _no("the grid was expanded"))
    ten = list(range(1, 11))
    axes = ["model.hidden_size", "train.steps", "train.batch_size", "train.eval_batch_size",
            "task.length", "train.learning_rate"]
    sweep = ", ".join(f"{a}: {ten}" for a in axes)
    err = refused(f"sweep: {{{sweep}}}\n")
    assert err.startswith(f"sweep: a grid of {10**6} trials (10 x 10 x 10 x 10 x 10 x 10 values) "
                          f"is more than the limit of {space.MAX_TRIALS} trials")
    assert "sweep fewer values, or sample the grid with method random" in err


def test_grid_limit_counts_grouped_axes_and_allows_the_limit_itself():
    assert space.MAX_TRIALS == 100_000  # the limit the README and the schema document
    at_limit = {f"train.k{i}": list(range(10)) for i in range(5)}  # 10^5: parsed, not expanded
    assert space.parse(at_limit).size() == 100_000
    over = {**at_limit, "variant": [{"model.cell": "rnn"}, {"model.cell": "gru"}]}
    with pytest.raises(ValueError, match="a grid of 200000 trials"):
        space.parse(over)


# ---- 3. random ranges ------------------------------------------------------------------------


def test_a_range_with_too_few_rounded_values_is_refused_up_front(refused, monkeypatch):
    monkeypatch.setattr(space.SearchSpace, "sample", _no("random points were drawn"))
    # [1.0, 1.0001] holds one number of 4 significant digits: 100000 distinct draws cannot exist
    err = refused("sweep: {method: random, num_trials: 100000, "
                  "train.learning_rate: {uniform: [1.0, 1.0001]}}\n")
    assert err == ("sweep.num_trials: 100000 distinct points cannot be drawn: draws are rounded "
                   "to 4 significant digits, and sweep.train.learning_rate.uniform [1.0, 1.0001] "
                   "gives about 1 distinct value; widen its range or lower num_trials")


def test_num_trials_up_to_the_rounded_values_of_a_range_is_drawn():
    # oracle: [0.5, 0.52] holds the 201 numbers 0.5000, 0.5001, ..., 0.5200
    values = {round(0.5 + i / 10_000, 4) for i in range(201)}
    sweep = {"method": "random", "x": {"uniform": [0.5, 0.52]}}
    points = space.parse({**sweep, "num_trials": 201}).sample()
    assert {p["x"].value for p in points} == values
    with pytest.raises(ValueError, match=r"202 distinct points cannot be drawn.*about 201"):
        space.parse({**sweep, "num_trials": 202})


def test_a_range_whose_width_overflows_float64_is_refused(refused):
    err = refused("sweep: {method: random, num_trials: 5, "
                  "model.options.forget_bias: {uniform: [-1e308, 1e308]}}\n", "model.cell=lstm")
    assert err.startswith("sweep.model.options.forget_bias.uniform: the range [-1e+308, 1e+308] "
                          "is too wide to draw from (high - low overflows float64)")


def test_an_int_range_beyond_int64_is_refused(refused):
    err = refused("sweep: {method: random, num_trials: 5, "
                  "train.steps: {int: [1, 100000000000000000000000]}}\n")
    assert err.startswith("sweep.train.steps.int: int bounds must fit in 64 bits")


# ---- 4. unknown keys: what is accepted, and the closest ------------------------------------


def test_misspelt_task_key_lists_the_tasks_keys_and_suggests_length(refused):
    err = refused("", "task.name=temporal_order", "task.lenght=10")
    assert err == ("task.lenght: unknown key (did you mean task.length?); the task temporal_order "
                   "takes name, length, solved_threshold, tolerance, variant")


def test_misspelt_task_name_key_is_suggested(refused):
    assert refused("", "task.nmae=adding").startswith(
        "task.nmae: unknown key (did you mean task.name?)")


def test_unknown_section_key_without_a_close_match_lists_the_sections_keys(refused):
    err = refused("", "train.zzz=1")
    assert err.startswith("train.zzz: unknown key; train takes optimizer, learning_rate, ")
    assert "steps" in err.split(";")[1]


def test_misspelt_key_of_a_grouped_axis_suggests_its_own_path(refused):
    err = refused("sweep: {variant: [{model.cel: gru}]}\n")
    assert err == ("sweep.variant[0].model.cel: unknown key "
                   "(did you mean sweep.variant[0].model.cell?)")


def test_an_option_of_other_cells_names_them(refused):
    err = refused("", "model.options.forget_bias=1.0")  # the cell is rnn
    assert err.startswith("model.options.forget_bias: unknown option for cell rnn "
                          "(forget_bias is an option of ")
    assert " lstm," in err and "valid options: activation" in err
