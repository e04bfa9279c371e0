"""Diagnostics in experiments: diagnostics.jsonl during training (at 0, every N steps and at
the end, per seed), equal after an interrupted and resumed run, `lstmjax diagnose` post hoc
from checkpoints, and the report's plots."""

from __future__ import annotations

import json

import pytest
from _reporters import InterruptAfter

from lstmjax import cli
from lstmjax.experiment import load_config, run

TINY = """\
name: dg
task: {name: adding, length: 6}
model: {cell: lstm, hidden_size: 8}
train: {optimizer: adam, learning_rate: 0.01, batch_size: 8, steps: 40, eval_every: 10,
        eval_batch_size: 16, seeds: 2, early_stop: false}
sweep: {model.cell: [rnn, lstm]}
output: {checkpoint_every: 10, progress: none}
"""


def _cfg(tmp_path, extra="diagnostics: {every: 20}\n", overrides=()):  # default batch, probes
    path = tmp_path / "dg.yaml"
    path.write_text(TINY + extra)
    return path, load_config(path, list(overrides))


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dg")
    _, cfg = _cfg(tmp, overrides=["output.checkpoint_every=40"])  # one orbax save per trial
    run(cfg, out_dir=tmp / "run")
    return tmp / "run"


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_diagnostics_are_written_at_init_every_n_steps_and_at_the_end(diagnosed):
    for trial in ("cell-rnn", "cell-lstm"):
        lines = _lines(diagnosed / trial / "diagnostics.jsonl")
        assert [(d["step"], d["seed"]) for d in lines] == [
            (s, seed) for s in (0, 20, 40) for seed in (0, 1)
        ]
        for d in lines:
            flow = d["gradient_flow"]
            assert flow["lag"] == list(range(6)) and flow["log10_gain"][0] == 0.0
    lstm = _lines(diagnosed / "cell-lstm" / "diagnostics.jsonl")
    assert lstm[0]["gates"]["keep_gate"] == "f"
    assert set(lstm[0]["gates"]["gates"]) == {"i", "f", "o"}
    rnn = _lines(diagnosed / "cell-rnn" / "diagnostics.jsonl")
    assert rnn[0]["gates"]["gates"] == {}  # an ungated cell
    for name in ("gradient_flow.png", "gates.png"):
        assert (diagnosed / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert "gradient_flow.png" in (diagnosed / "report.md").read_text()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_diagnostics(diagnosed, tmp_path):
    _, cfg = _cfg(tmp_path, overrides=["model.cell=lstm"])  # the sweep's lstm trial alone
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=out, progress=InterruptAfter(3), report=False)  # after the step-20 point
    run(cfg, out_dir=out, resume=True, report=False)
    assert (out / "default" / "diagnostics.jsonl").read_text() == (
        diagnosed / "cell-lstm" / "diagnostics.jsonl").read_text()


def test_diagnose_computes_them_post_hoc_from_checkpoints(diagnosed, tmp_path, capsys):
    # checkpointed at the end only: diagnose reads the last checkpoint (keep_checkpoints: 1)
    path, cfg = _cfg(tmp_path, extra="",
                     overrides=["model.cell=lstm", "output.checkpoint_every=40"])
    out = tmp_path / "plain"
    run(cfg, out_dir=out)
    assert not (out / "default" / "diagnostics.jsonl").exists()
    assert cli.main(["diagnose", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "diagnosed 1 trial(s)" in printed
    # the one trial is its variant's boundary (solved or not at gap 6): named as such
    assert "boundary: lstm at gap 6 (" in printed
    why = (out / "report.md").read_text().split("## Why: at each variant's boundary")[1]
    assert "- lstm at gap 6 (" in why and "at step 40, " in why  # init and last checkpoint
    post = _lines(out / "default" / "diagnostics.jsonl")
    during = _lines(diagnosed / "cell-lstm" / "diagnostics.jsonl")
    assert [(d["step"], d["seed"]) for d in post] == [(0, 0), (0, 1), (40, 0), (40, 1)]
    # the same trained parameters and the same fixed batch give the same numbers
    for p in post:
        d = next(x for x in during if (x["step"], x["seed"]) == (p["step"], p["seed"]))
        assert p["gradient_flow"] == d["gradient_flow"] and p["gates"] == d["gates"]
    assert (out / "plots" / "gradient_flow.png").exists()
    assert cli.main(["diagnose", str(tmp_path / "missing")]) == 2


def test_diagnostics_lines_equal_the_library_per_seed(diagnosed):
    """Oracle: lstmjax.diagnostics called on one seed at a time, on the documented batch
    (``diagnostics.batch_size`` sequences from ``fold_in(PRNGKey(seed), 3)``), at init."""
    import jax
    import numpy as np

    from lstmjax import diagnostics
    from lstmjax.experiment import expand, load_run_config
    from lstmjax.train import make_trainer

    cfg = load_run_config(diagnosed)
    for trial in expand(cfg):
        trainer = make_trainer(trial.cfg)
        cell = trainer.model.net.cells[0]
        lines = _lines(diagnosed / trial.name / "diagnostics.jsonl")
        for seed in trial.cfg.train.seeds:
            key = jax.random.PRNGKey(seed)
            params = trainer.init(key, trial.cfg.train.learning_rate).params["rnn"][0][0]
            batch = trainer.task.sample(jax.random.fold_in(key, 3), cfg.diagnostics.batch_size)
            flow = diagnostics.gradient_flow(cell, params, batch.inputs, key=key,
                                             seq_lengths=batch.lengths,
                                             num_probes=cfg.diagnostics.num_probes).to_dict()
            gates = diagnostics.gate_stats(cell, params, batch.inputs,
                                           seq_lengths=batch.lengths).to_dict()
            got = next(d for d in lines if (d["step"], d["seed"]) == (0, seed))
            np.testing.assert_allclose(got["gradient_flow"]["log10_gain"], flow["log10_gain"],
                                       atol=6e-5)  # written rounded to 4 decimals
            assert got["gates"].keys() == gates.keys()
            # the lags of the documented batch (the task's rule is pinned by
            # test_dependency_lags.py): adding's marker distances, all within the sequence
            assert got["dependency_lags"] == [int(v) for v in trainer.task.dependency_lags(batch)]
            assert all(0 < v < batch.inputs.shape[1] for v in got["dependency_lags"])
            for name, stats in gates["gates"].items():
                for k, v in stats.items():
                    np.testing.assert_allclose(got["gates"]["gates"][name][k], v, rtol=1e-5)


def test_load_diagnostics_is_the_jsonl_lines_as_tidy_frames(diagnosed):
    pytest.importorskip("pandas")
    from lstmjax.experiment import load_diagnostics

    d = load_diagnostics(diagnosed)
    lead = ["trial", "variant", "cell", "length", "seed", "step"]
    assert list(d.gradient_flow.columns) == [*lead, "lag", "log10_gain", "dependency_lag"]
    assert list(d.gates.columns) == [*lead, "gate", "mean", "frac_low", "frac_high",
                                     "saturation"]
    assert list(d.timescales.columns) == [*lead, "keep_gate", "tau_q10", "tau_q25",
                                          "tau_median", "tau_q75", "tau_q90"]
    for trial in ("cell-rnn", "cell-lstm"):
        lines = _lines(diagnosed / trial / "diagnostics.jsonl")
        flow = d.gradient_flow[d.gradient_flow["trial"] == trial]
        assert len(flow) == sum(len(ln["gradient_flow"]["lag"]) for ln in lines)
        for ln in lines:
            mine = flow[(flow["seed"] == ln["seed"]) & (flow["step"] == ln["step"])]
            assert list(mine["lag"]) == ln["gradient_flow"]["lag"]
            assert list(mine["log10_gain"]) == pytest.approx(ln["gradient_flow"]["log10_gain"])
            assert set(mine["dependency_lag"]) == {sorted(ln["dependency_lags"])[
                round(0.5 * (len(ln["dependency_lags"]) - 1))]}
            gates = d.gates[(d.gates["trial"] == trial) & (d.gates["seed"] == ln["seed"])
                            & (d.gates["step"] == ln["step"])]
            want = ln["gates"]["gates"]
            assert sorted(gates["gate"]) == sorted(want)
            for _, row in gates.iterrows():
                g = want[row["gate"]]
                assert row["mean"] == pytest.approx(g["mean"])
                assert row["saturation"] == pytest.approx(g["frac_low"] + g["frac_high"])
        taus = d.timescales[d.timescales["trial"] == trial]
        if trial == "cell-rnn":  # no gates, no memory time-scale
            assert taus.empty and d.gates[d.gates["trial"] == trial].empty
        else:
            assert set(taus["keep_gate"]) == {"f"} and len(taus) == len(lines)
            first = lines[0]["gates"]["timescale"]
            row = taus[(taus["seed"] == lines[0]["seed"]) & (taus["step"] == lines[0]["step"])]
            for q in ("q10", "q25", "median", "q75", "q90"):
                assert row[f"tau_{q}"].item() == pytest.approx(first[q])
