"""The report on incomplete and very large runs (issue 23): an interrupted gap frontier says it is
incomplete instead of stating a frontier, every markdown table of report.md is well formed, and
the plots of a run of thousands of trials are bounded (a summary figure stands in for the rest).

No training: each test writes a fake run directory as the runner writes one -- the run's
``config.yaml``, and per finished trial ``config.yaml``, ``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import pytest

from lstmjax._io import json_safe
from lstmjax.experiment import expand, frontier, load_config, search, write_report
from lstmjax.experiment.config import to_dict
from lstmjax.experiment.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    check_same_config,
    read_yaml,
    write_config,
)
from lstmjax.experiment.summary import SeedResult, TrialSummary

BASE = """\
name: fake
task: {name: even_pairs, length: 5}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.01, batch_size: 16, steps: 40, eval_every: 20,
        eval_batch_size: 32, seeds: 2}
output: {progress: none}
"""
CHANCE = 0.6931


def _config(tmp_path: Path, extra: str):
    path = tmp_path / "fake.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return load_config(path)


def _start_run(tmp_path: Path, cfg) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir / CONFIG_FILE, to_dict(cfg))
    return run_dir


def _finish(run_dir: Path, trial, solved: list[bool], *, loss: float = 0.1,
            length_eval: list[dict] | None = None, trial_config: bool = True) -> None:
    """Write a finished trial's files: 2 evaluations per seed, solved at the second."""
    tdir = run_dir / trial.name
    tdir.mkdir()
    if trial_config:
        write_config(tdir / CONFIG_FILE, to_dict(trial.cfg))
    seeds = list(range(len(solved)))
    lines = [{"step": step, "seed": s, "loss": loss * (2 if step == 20 else 1),
              "accuracy": 0.9, "solved": ok and step == 40}
             for step in (20, 40) for s, ok in zip(seeds, solved, strict=True)]
    (tdir / METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in lines))
    per_seed = [SeedResult(seed=s, solved=ok, steps_to_solve=40 if ok else None,
                           final_loss=loss, final_accuracy=0.9, diverged=False,
                           diverged_step=None, steps_trained=40)
                for s, ok in zip(seeds, solved, strict=True)]
    summary = TrialSummary.build(
        per_seed, trial=trial.name, index=trial.index, values=trial.values,
        variant=trial.variant, task=trial.cfg.task.name, cell=trial.cfg.model.cell,
        length=trial.cfg.task.length, chance_loss=CHANCE, loss_type="xent",
        steps=40, seeds=seeds, length_eval=length_eval)
    # what write_summary writes, without its fsyncs (thousands of trials are written here)
    (tdir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary.to_json()), indent=2) + "\n")


# ---- 1. an interrupted gap frontier ------------------------------------------------------------

FRONTIER = """\
frontier: {start: 5, max: 40, factor: 2, resolution: 0.1}
sweep: {variant: [{name: rnn, model.cell: rnn}, {name: gru, model.cell: gru}]}
"""


def _frontier_run(tmp_path: Path, finished: int, threshold: int = 1000) -> tuple[Path, object]:
    """A frontier run killed after its first ``finished`` probes (in the order the runner makes
    them: variant by variant), each variant solving every gap up to ``threshold``."""
    cfg = _config(tmp_path, FRONTIER)
    run_dir = _start_run(tmp_path, cfg)
    done, index = 0, 0
    for variant in expand(cfg):
        known: dict[int, float] = {}
        while done < finished:
            gap, _ = frontier.plan(cfg.frontier, known)
            if gap is None:
                break
            ok = gap <= threshold
            _finish(run_dir, search.probe(cfg, cfg.frontier, variant, gap, index), [ok, ok])
            known[gap], done, index = float(ok), done + 1, index + 1
    return run_dir, cfg


def _frontier_csv(run_dir: Path) -> dict[str, dict]:
    with (run_dir / "frontier.csv").open() as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def _finding(report: str) -> str:
    return next(line for line in report.splitlines() if line.startswith("**Finding.**"))


def test_frontier_killed_before_any_probe_finished_reports_incomplete(tmp_path):
    run_dir, _ = _frontier_run(tmp_path, finished=0)
    rep = write_report(run_dir, plots=False)
    report = (run_dir / "report.md").read_text()
    found = _finding(report)
    assert "incomplete" in found and "incomplete" in rep["finding"]
    assert "0 probes" in found and "--resume" in found
    # nothing is known yet: no variant "solves no gap", nothing is "> max"
    assert "no variant solves" not in report and "solves no gap" not in report
    assert "> 40" not in report and "> 40" not in rep["frontier_table"]
    rows = _frontier_csv(run_dir)
    assert set(rows) == {"rnn", "gru"}
    for r in rows.values():
        assert set(r) >= {"variant", "largest_solved", "smallest_unsolved", "probes", "complete"}
        assert r["complete"] == "False"
        assert (r["largest_solved"], r["smallest_unsolved"], r["probes"]) == ("", "", "0")


def test_frontier_killed_mid_search_reports_incomplete_without_claiming_a_frontier(tmp_path):
    # rnn: 5, 10, 20, 40 all solved -> complete ("solves every gap up to 40");
    # gru: only 5 and 10 finished before the kill -> incomplete
    run_dir, _ = _frontier_run(tmp_path, finished=6)
    rep = write_report(run_dir, plots=False)
    found = _finding((run_dir / "report.md").read_text())
    assert "incomplete" in found and "--resume" in found
    assert "6 probes" in found
    assert "rnn solves every gap up to 40" in found
    gru = next(p for p in found.split(";") if "gru" in p)
    assert "every gap" not in gru and "fails" not in gru  # its search has not finished
    rows = _frontier_csv(run_dir)
    assert rows["rnn"]["complete"] == "True" and rows["gru"]["complete"] == "False"
    assert (rows["gru"]["largest_solved"], rows["gru"]["smallest_unsolved"]) == ("10", "")
    table = rep["frontier_table"]
    gru_row = next(line for line in table.splitlines() if line.startswith("| gru "))
    assert "incomplete" in gru_row and "> 40" not in gru_row
    rnn_row = next(line for line in table.splitlines() if line.startswith("| rnn "))
    assert "> 40 (max)" in rnn_row and "incomplete" not in rnn_row


def test_frontier_killed_while_bisecting_does_not_claim_where_it_fails(tmp_path):
    # rnn solves up to 12: 5, 10 solved, 20 not, then bisection 14 (not) ... killed after 14
    run_dir, _ = _frontier_run(tmp_path, finished=4, threshold=12)
    rep = write_report(run_dir, plots=False)
    assert "incomplete" in rep["finding"] and "fails" not in rep["finding"]
    assert _frontier_csv(run_dir)["rnn"]["complete"] == "False"


def test_finished_frontier_states_the_frontier_without_an_incomplete_note(tmp_path):
    run_dir, _ = _frontier_run(tmp_path, finished=100, threshold=12)
    rep = write_report(run_dir, plots=False)
    assert "incomplete" not in rep["finding"]
    # the fake curves fall (0.2 then 0.1), so the unsolved gap reads as a budget limit
    assert "solves gaps up to 12 and had not solved 13" in rep["finding"]
    assert all(r["complete"] == "True" for r in _frontier_csv(run_dir).values())


def test_the_suggested_resume_command_loads_the_runs_own_config(tmp_path):
    run_dir, cfg = _frontier_run(tmp_path, finished=1)
    rep = write_report(run_dir, plots=False)
    command = re.search(r"`(lstmjax run [^`]*)`", rep["finding"]).group(1).split()
    config, out = command[2], command[command.index("--out") + 1]
    assert Path(out) == run_dir and "--resume" in command
    stored = run_dir / CONFIG_FILE
    check_same_config(read_yaml(stored), to_dict(load_config(config)), stored)  # no error


def test_grid_run_with_unfinished_trials_says_it_is_incomplete(tmp_path):
    cfg = _config(tmp_path, "sweep: {model.cell: [rnn, gru], task.length: [5, 10]}\n")
    run_dir = _start_run(tmp_path, cfg)
    trials = expand(cfg)
    for t in trials[:3]:
        _finish(run_dir, t, [True, True])
    rep = write_report(run_dir, plots=False)
    assert "incomplete: 3 of 4 trials finished" in rep["finding"]
    _finish(run_dir, trials[3], [True, True])
    assert "incomplete" not in write_report(run_dir, plots=False)["finding"]


# ---- 2. well-formed markdown tables ------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (a leading and a trailing pipe, no escaped pipes)."""
    assert line.startswith("|") and line.endswith("|"), line
    return line[1:-1].split("|")


def _tables(markdown: str) -> list[list[str]]:
    """Every table (consecutive lines starting with a pipe) of ``markdown``."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append(current)
            current = []
    return tables


def _check_table(lines: list[str]) -> None:
    header, separator, *rows = lines
    width = len(_cells(header))
    seps = _cells(separator)
    assert len(seps) == width, f"{len(seps)} separator cells for {width} header cells: {lines}"
    assert all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in seps), separator
    for row in rows:
        assert len(_cells(row)) == width, f"{row!r} has not {width} cells"


def test_table_checker_catches_a_separator_cell_too_many():
    with pytest.raises(AssertionError, match="3 separator cells for 2 header cells"):
        _check_table(["| a | b |", "|:--|--:||"])
    _check_table(["| a | b |", "|:--|--:|", "| 1 | 2 |"])


def test_every_table_in_the_report_has_as_many_separator_cells_as_header_cells(tmp_path):
    cfg = _config(tmp_path, "sweep: {model.cell: [rnn, gru], task.length: [5, 10]}\n")
    run_dir = _start_run(tmp_path, cfg)
    trials = expand(cfg)
    for t in trials[:3]:  # one left running, so the trials table has its short rows too
        gap = t.cfg.task.length
        evals = [{"length": n, "trained": n == gap, "loss": [0.1, 0.2],
                  "loss_vs_chance": [0.1, 0.3], "accuracy": [0.9, 0.8], "solved": [True, False]}
                 for n in (5, 10, 20)]
        _finish(run_dir, t, [True, False], length_eval=evals)
    write_report(run_dir, plots=False)
    report = (run_dir / "report.md").read_text()
    assert "## Length generalisation" in report
    tables = _tables(report)
    assert len(tables) == 4  # effective settings, solved fraction by gap, trials, lengths
    for table in tables:
        _check_table(table)


def test_frontier_report_tables_are_well_formed(tmp_path):
    run_dir, _ = _frontier_run(tmp_path, finished=6)
    write_report(run_dir, plots=False)
    tables = _tables((run_dir / "report.md").read_text())
    assert len(tables) == 4  # largest gap solved, settings, solved fraction by gap, trials
    for table in tables:
        _check_table(table)


# ---- 3. thousands of trials: bounded plots ------------------------------------------------------

N_RATES = 1000  # x 2 gaps = 2000 trials
# per figure; 12 variants of a classification task: a loss and an accuracy panel each
MAX_LINES, MAX_PANELS = 200, 24


def _count_figures(monkeypatch) -> list[dict]:
    """Record, for every figure the report saves, its visible axes and artists; and stop a
    figure as soon as it gets more than MAX_LINES lines or MAX_PANELS panels (so that code
    drawing every variant fails here at once instead of drawing for minutes)."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lstmjax.experiment import report

    seen: list[dict] = []
    save = report._save
    plot, subplots, calls = Axes.plot, Figure.subplots, {}

    def counting_plot(ax, *args, **kwargs):
        calls[id(ax.figure)] = calls.get(id(ax.figure), 0) + 1
        assert calls[id(ax.figure)] <= MAX_LINES, f"more than {MAX_LINES} lines in one figure"
        return plot(ax, *args, **kwargs)

    def counting_subplots(fig, nrows=1, ncols=1, **kwargs):
        assert nrows * ncols <= MAX_PANELS, f"{nrows} x {ncols} panels in one figure"
        return subplots(fig, nrows, ncols, **kwargs)

    def counting_save(fig, path):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        seen.append({
            "name": Path(path).name, "axes": len(axes),
            "lines": sum(len(ax.lines) for ax in axes),
            # per panel: each panel draws a fixed number of artists, however many trials
            "collections": max((len(ax.collections) for ax in axes), default=0),
            "legend": max((len(ax.get_legend().texts) for ax in axes if ax.get_legend()),
                          default=0),
            "ticks": max((len(ax.get_xticks()) for ax in axes), default=0),
        })
        save(fig, path)

    monkeypatch.setattr(Axes, "plot", counting_plot)
    monkeypatch.setattr(Figure, "subplots", counting_subplots)
    monkeypatch.setattr(report, "_save", counting_save)
    return seen


@pytest.fixture(scope="module")
def huge_report(tmp_path_factory):
    """A fake run of 2000 finished trials (1000 learning rates x 2 gaps; variant k solves
    k % 3 of its 2 seeds) and its report, written once with the figures counted and the
    variants drawn by solved_vs_gap recorded."""
    from lstmjax.experiment import report

    tmp = tmp_path_factory.mktemp("huge")
    rates = ", ".join(f"{1e-4 * (1 + i):.6g}" for i in range(N_RATES))
    cfg = _config(tmp, f"sweep: {{train.learning_rate: [{rates}], task.length: [5, 10]}}\n")
    run_dir = _start_run(tmp, cfg)
    trials = expand(cfg)
    assert len(trials) == 2 * N_RATES
    for i, t in enumerate(trials):
        k = i // 2
        _finish(run_dir, t, [k % 3 >= 1, k % 3 == 2], loss=0.01 + (k % 97) / 100,
                trial_config=False)
    drawn: list[str] = []
    real = report._solved_vs_gap

    def spy(trials, cfg):
        drawn.extend(dict.fromkeys(t["variant"] for t in trials))
        return real(trials, cfg)

    with pytest.MonkeyPatch.context() as mp:
        seen = _count_figures(mp)
        mp.setattr(report, "_solved_vs_gap", spy)
        rep = write_report(run_dir, out=tmp / "rep")
    return {"dir": tmp / "rep", "trials": trials, "seen": seen, "drawn": drawn, "rep": rep}


def test_report_of_thousands_of_trials_draws_a_bounded_number_of_plots(huge_report):
    seen, rep, out = huge_report["seen"], huge_report["rep"], huge_report["dir"]
    names = [s["name"] for s in seen]
    assert "all_variants.png" in names and "solved_vs_gap.png" in names
    assert len(seen) <= 8
    for s in seen:
        assert s["axes"] <= MAX_PANELS, s
        assert s["lines"] <= MAX_LINES and s["collections"] <= 20, s
        assert s["legend"] <= 20 and s["ticks"] <= 30, s
    assert [Path(p).name for p in rep["plots"]] == names
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in rep["plots"])
    report = (out / "report.md").read_text()
    # the note says what the plots leave out; the tables are complete
    assert f"12 of {N_RATES} variants" in report and "plots/all_variants.png" in report
    trials = huge_report["trials"]
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * len(trials)  # 2 seeds per trial
    trials_table = report[report.index("## Trials"):]
    assert all(f"| {t.name} |" in trials_table for t in trials)
    assert len(rep["table"].splitlines()) == 2 + N_RATES
    # the one-sentence finding names a dozen variants, not a thousand
    assert "988 more variants in the tables" in rep["finding"]
    assert rep["finding"].count(" solves ") == 12


def test_plots_of_many_variants_draw_the_best_ones(huge_report):
    drawn = huge_report["drawn"]
    # variant k (k = 0, 1, ...) solves both seeds of its trials exactly when k % 3 == 2
    variants = list(dict.fromkeys(t.variant for t in huge_report["trials"]))
    assert len(drawn) == 12 and len(set(drawn)) == 12
    assert set(drawn) <= {v for k, v in enumerate(variants) if k % 3 == 2}


def test_a_report_of_few_variants_draws_them_all_and_drops_a_stale_summary(tmp_path,
                                                                          monkeypatch):
    cfg = _config(tmp_path, "sweep: {model.cell: [rnn, gru], task.length: [5, 10]}\n")
    run_dir = _start_run(tmp_path, cfg)
    for t in expand(cfg):
        _finish(run_dir, t, [True, False])
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "all_variants.png").write_bytes(b"old")
    seen = _count_figures(monkeypatch)
    rep = write_report(run_dir)
    # each variant solved one seed at both gaps: the cost plot too
    assert [s["name"] for s in seen] == ["solved_vs_gap.png", "learning_curves.png",
                                         "steps_to_solve.png"]
    # per variant a loss panel (a median per gap, chance) and, even_pairs being a classification
    # task, an accuracy panel (a median per gap, the solved threshold)
    assert seen[1]["axes"] == 4 and seen[1]["lines"] == 2 * (2 + 1) + 2 * (2 + 1)
    assert not (run_dir / "plots" / "all_variants.png").exists()
    report = (run_dir / "report.md").read_text()
    assert "variants, the best" not in report and len(rep["plots"]) == 3
