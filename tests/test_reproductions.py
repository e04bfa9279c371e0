"""The reproduction experiments (experiments/<name>/) do not rot: each one's first trial trains a
few steps and is reported (every trial's cell and task are built by the config loader,
test_config.py), and ``experiments/reproduce.py`` rewrites only the measured part of RESULTS.md.
The full smoke (every trial of every experiment) is `python experiments/reproduce.py NAME --smoke`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml

from lstmjax.experiment import from_dict, run
from lstmjax.experiment.config import apply_overrides, load_trials

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reproduce", ROOT / "experiments" / "reproduce.py")
reproduce = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproduce)

NAMES = reproduce.experiment_names()
ISSUE_EXPERIMENTS = {
    "gap_scaling", "hochreiter1997_adding", "hochreiter1997_temporal_order",
    "greff2017_variants", "jozefowicz2015_forget_bias", "tallec2018_chrono",
    "arjovsky2016_copy", "feng2024_minimal_rnns",
}


def test_every_reproduction_has_config_readme_and_results():
    assert ISSUE_EXPERIMENTS <= set(NAMES)
    for name in NAMES:
        exp = ROOT / "experiments" / name
        assert (exp / "README.md").is_file(), name
        results = (exp / "RESULTS.md").read_text()
        assert reproduce.BEGIN in results and reproduce.END in results, name
        assert "## Verdict" in results, f"{name}: RESULTS.md has no verdict"


@pytest.mark.parametrize("name", NAMES)
def test_first_trial_of_each_experiment_trains_and_reports(name, tmp_path):
    path = ROOT / "experiments" / name / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    first = load_trials(copy.deepcopy(raw))[1][0]
    raw.pop("sweep", None)  # pinned to the first trial's values (cell options as it has them)
    apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in first.assignment.items()])
    raw["model"]["options"] = dict(first.cfg.model.options)
    apply_overrides(raw, reproduce.smoke_overrides(path) + ["train.seeds=1",
                                                            "output.plots=false"])
    result = run(from_dict(raw), tmp_path / "run", progress="none")
    assert (tmp_path / "run" / "report.md").is_file()
    assert result["trials"], name
    for trial in result["trials"]:
        (seed,) = trial["per_seed"]
        assert seed["steps_trained"] == 4
        assert math.isfinite(seed["final_loss"])


def test_refresh_rewrites_only_the_measured_block(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    run_dir = tmp_path / "runs" / "demo"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "plots" / "a.png").write_bytes(b"png")
    (run_dir / "report.md").write_text("# demo\n\n## Trials\n\n| a |\n|--|\n| 1 |\n")
    (run_dir / "reproduce.json").write_text(json.dumps([
        {"started": "2026-12-01T10:00:00+00:00", "wall_s": 60.0, "exit": 0, "overrides": []},
        {"started": "2026-12-01T11:00:00+00:00", "wall_s": 90.0, "exit": 0, "overrides": []}]))
    exp = tmp_path / "experiments" / "demo"
    exp.mkdir(parents=True)
    (exp / "RESULTS.md").write_text(
        f"# Demo\n\nPaper: 42.\n\n{reproduce.BEGIN}\nold numbers\n{reproduce.END}\n\n"
        "**Verdict: reproduced.**\n")
    reproduce.refresh("demo")
    text = (exp / "RESULTS.md").read_text()
    assert "old numbers" not in text
    assert text.startswith("# Demo\n\nPaper: 42.\n\n")
    assert text.rstrip().endswith("**Verdict: reproduced.**")
    assert "### Trials" in text and "| 1 |" in text
    assert "**2.5 min** over 2 invocations" in text  # 60 s + 90 s
    assert (exp / "plots" / "a.png").read_bytes() == b"png"
