"""Effective settings are never silent: an option a variant's cell does not take is a warning
(printed by the run, listed in the report), an option that changes a named cell's preset is a
warning, and two variants that build the same model are a config error."""

from __future__ import annotations

import pytest

from lstmjax.experiment import ConfigError, expand, from_dict, run
from lstmjax.experiment.effective import option_notes

BASE = {
    "name": "eff",
    "task": {"name": "adding", "length": 4},
    "model": {"cell": "lstm", "hidden_size": 4, "options": {"forget_bias": 1.0}},
    "train": {"steps": 10, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8,
              "seeds": 1},
    "output": {"progress": "none", "plots": False, "checkpoint_every": 1000},
}


def _cfg(**changes):
    raw = {**BASE, **changes}
    return from_dict(raw)


def test_an_option_a_variant_does_not_take_is_named():
    cfg = _cfg(sweep={"model.cell": ["lstm", "cifg", "gru"]})
    notes = option_notes(cfg.model.options, expand(cfg))
    assert notes == [
        "model.options.forget_bias not applied to cifg (cell cifg does not take forget_bias=1)",
        "model.options.forget_bias not applied to gru (cell gru does not take forget_bias=1)",
    ]


def test_an_option_that_changes_a_preset_is_named():
    cfg = _cfg(model={"cell": "peephole", "hidden_size": 4, "options": {"peepholes": ["f"]}})
    assert option_notes(cfg.model.options, expand(cfg)) == [
        "model.options.peepholes=f changes the preset of cell peephole (peepholes=i+f+o) in "
        "peephole"]


def test_two_variants_that_build_the_same_model_are_refused():
    with pytest.raises(ConfigError, match=r"^sweep: 'lstm' and 'peephole' build the same model"):
        _cfg(model={"cell": "lstm", "hidden_size": 4, "options": {"peepholes": ["f"]}},
             sweep={"model.cell": ["lstm", "peephole"]})
    with pytest.raises(ConfigError, match="'a' and 'b' build the same model"):
        _cfg(sweep={"variant": [{"name": "a", "model.cell": "np"},
                                {"name": "b", "model.cell": "lstm"}]})
    _cfg(sweep={"model.cell": ["lstm", "peephole"]})  # different peepholes: fine


def test_the_run_prints_them_and_the_report_lists_them(tmp_path, capsys):
    cfg = _cfg(sweep={"model.cell": ["lstm", "cifg"]})
    result = run(cfg, out_dir=tmp_path / "run")
    err = capsys.readouterr().err
    assert ("warning: model.options.forget_bias not applied to cifg (cell cifg does not take "
            "forget_bias=1)") in err
    report = (tmp_path / "run" / "report.md").read_text()
    section = report.split("## Effective settings")[1].split("##")[0]
    assert "| cifg | cifg | 0.001 | coupled=true | forget_bias |" in section
    assert "forget_bias not applied to cifg" in section
    assert result["report"]["report"]
