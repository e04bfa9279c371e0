"""Jobs and devices (lstmjax.experiment.schedule): learning-rate sweeps trained as one program,
and trials placed on several devices -- results independent of the schedule, failures isolated,
resume across device counts. The device count is process-global, so everything that needs two
devices runs in one subprocess (``_SCENARIOS``) whose findings the tests read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from lstmjax.experiment import load_config, read_metrics, run
from lstmjax.experiment.schedule import Placement, make_jobs, placements, select_devices
from lstmjax.experiment.sweep import expand

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: sched
task: {name: adding, length: 5}
model: {cell: gru, hidden_size: 6}
train: {learning_rate: 0.01, batch_size: 4, steps: 60, eval_every: 20, eval_batch_size: 8,
        seeds: 2}
output: {checkpoint_every: 20, progress: none}
"""


def _cfg(tmp_path: Path, text: str, overrides=()):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, overrides=list(overrides))


# ---- jobs and placements (pure) ------------------------------------------------------------


def test_trials_differing_only_in_learning_rate_share_a_job(tmp_path):
    cfg = _cfg(tmp_path, BASE + "sweep: {model.cell: [gru, rnn], "
               "train.learning_rate: [0.1, 0.01, 0.001]}\n")
    trials = expand(cfg)
    plan = {t.name: "new" for t in trials}
    jobs = make_jobs(trials, plan)
    assert [[t.values["model.cell"] for t in j.trials] for j in jobs] == [["gru"] * 3, ["rnn"] * 3]
    assert [t.cfg.train.learning_rate for t in jobs[0].trials] == [0.1, 0.01, 0.001]
    assert jobs[0].seeds == 6

    # a resumed group is the same program again (finished trials stand in, frozen); a group
    # whose trials have all finished is no job
    plan[trials[0].name], plan[trials[1].name] = "resume", "finished"
    assert [len(j.trials) for j in make_jobs(trials, plan)] == [3, 3]
    plan.update({t.name: "finished" for t in trials[:3]})
    assert [[t.name for t in j.trials] for j in make_jobs(trials, plan)] == [
        [t.name for t in trials[3:]]]

    off = _cfg(tmp_path, BASE + "sweep: {train.learning_rate: [0.1, 0.01]}\n",
               ["train.batch_learning_rates=false"])
    assert [len(j.trials) for j in make_jobs(expand(off), {t.name: "new" for t in expand(off)})
            ] == [1, 1]


class _Dev:
    def __init__(self, i):
        self.id, self.platform = i, "cpu"


def test_placements_share_devices_only_when_jobs_are_fewer(tmp_path):
    cfg = _cfg(tmp_path, BASE + "sweep: {model.cell: [gru, rnn, lstm]}\n")
    jobs = make_jobs(expand(cfg), {t.name: "new" for t in expand(cfg)})
    devs = [_Dev(i) for i in range(4)]
    assert all(p.devices == () for p in placements(jobs, devs[:2]))  # 3 jobs >= 2 devices
    one = placements(jobs[:1], devs)  # 1 job of 2 seeds on 4 devices: 2 of them (2 | 2)
    assert [d.id for d in one[0].devices] == [0, 1]
    two = placements(jobs[:2], devs)
    assert [[d.id for d in p.devices] for p in two] == [[0, 1], [2, 3]]
    assert Placement((devs[0], devs[1])).label == "cpu:0+cpu:1"


def test_asking_for_more_devices_than_exist_is_one_line(tmp_path):
    with pytest.raises(Exception, match=r"devices: 99 requested but this process has 1 cpu"):
        select_devices(99)


# ---- batched learning rates ----------------------------------------------------------------


def test_batched_learning_rates_equal_separate_programs_and_compile_once(tmp_path):
    from jax import monitoring

    compiles: list[str] = []

    def listen(event, duration, fun_name="", **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":  # one XLA compile
            compiles.append(fun_name)

    monitoring.register_event_duration_secs_listener(listen)
    text = BASE + "sweep: {train.learning_rate: [0.03, 0.01, 0.003, 0.001]}\n"
    last = ["output.checkpoint_every=60"]  # checkpointed at the end only: metrics are the same
    try:
        batched = run(_cfg(tmp_path, text, last), out_dir=tmp_path / "batched", report=False)
        n_batched, compiles[:] = compiles.count("jit(chunk)"), []
        separate = run(_cfg(tmp_path, text, ["train.batch_learning_rates=false", *last]),
                       out_dir=tmp_path / "separate", report=False)
        n_separate = compiles.count("jit(chunk)")
    finally:
        monitoring.unregister_event_duration_listener(listen)
    # the training program of the four trials compiles once; separately, once per trial
    assert (n_batched, n_separate) == (1, 4)
    assert [t["trial"] for t in batched["trials"]] == [t["trial"] for t in separate["trials"]]
    for a, b in zip(batched["trials"], separate["trials"], strict=True):
        ma = read_metrics(tmp_path / "batched" / a["trial"] / "metrics.jsonl")
        mb = read_metrics(tmp_path / "separate" / b["trial"] / "metrics.jsonl")
        assert [(m["step"], m["seed"]) for m in ma] == [(m["step"], m["seed"]) for m in mb]
        for x, y in zip(ma, mb, strict=True):
            assert x["lr"] == pytest.approx(y["lr"], rel=1e-7)
            assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-7)
            assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5, abs=1e-7)
        assert [(s["solved"], s["steps_to_solve"]) for s in a["per_seed"]] == [
            (s["solved"], s["steps_to_solve"]) for s in b["per_seed"]]
    # the learning rate each trial trained with is its own
    for t in batched["trials"]:
        lines = read_metrics(tmp_path / "batched" / t["trial"] / "metrics.jsonl")
        assert lines[0]["lr"] == pytest.approx(float(t["trial"].split("-", 1)[1]), rel=1e-6)


# ---- several devices (one subprocess) ------------------------------------------------------

_SCENARIOS = textwrap.dedent(r"""
    import json, shutil, sys
    from pathlib import Path
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    from lstmjax.experiment import load_config, run, read_metrics
    from lstmjax.experiment import runner
    from lstmjax.experiment.progress import Reporter

    out = Path(sys.argv[1]); base = Path(sys.argv[2]).read_text()
    def cfg(extra, overrides=()):
        p = out / "c.yaml"; p.write_text(base + extra)
        return load_config(p, overrides=list(overrides))
    def metrics(run_dir):
        return {d.name: (d / "metrics.jsonl").read_bytes().decode()
                for d in sorted(Path(run_dir).iterdir()) if (d / "metrics.jsonl").exists()}
    def close(a, b, rel=1e-6):  # same records; numbers equal to `rel` (a sharded program)
        if sorted(a) != sorted(b):
            return False
        for name in a:
            la = [json.loads(x) for x in a[name].splitlines()]
            lb = [json.loads(x) for x in b[name].splitlines()]
            if [(x["step"], x["seed"], x["solved"]) for x in la] != [
                    (x["step"], x["seed"], x["solved"]) for x in lb]:
                return False
            for x, y in zip(la, lb):
                if abs(x["loss"] - y["loss"]) > rel * abs(y["loss"]) + 1e-9:
                    return False
        return True
    found = {"devices": [str(d) for d in jax.devices()]}

    grid = "sweep: {model.cell: [gru, rnn]}\n"
    r1 = run(cfg(grid), out / "grid1", devices=1, report=False)
    r2 = run(cfg(grid), out / "grid2", devices=2, report=False)
    found["grid_same"] = metrics(out / "grid1") == metrics(out / "grid2")
    found["grid_trials"] = sorted(metrics(out / "grid2"))
    found["grid_devices"] = r2["devices"]

    # one trial of 4 seeds: sharded over both devices
    s1 = run(cfg("", ["train.seeds=4"]), out / "one1", devices=1, report=False)
    s2 = run(cfg("", ["train.seeds=4"]), out / "one2", devices=2, report=False)
    found["sharded"] = [s1["trials"][0]["per_seed"], s2["trials"][0]["per_seed"]]
    found["sharded_metrics"] = [read_metrics(out / "one1" / "default" / "metrics.jsonl"),
                                read_metrics(out / "one2" / "default" / "metrics.jsonl")]

    # data parallel: each trial's batch split over both devices, trials in turn; the same
    # records as one device, numbers to float tolerance (partial sums are all-reduced)
    d2 = run(cfg(grid, ["train.data_parallel=true"]), out / "dp2", devices=2, report=False)
    found["dp_devices"] = d2["devices"]
    found["dp_same"] = close(metrics(out / "dp2"), metrics(out / "grid1"), rel=1e-4)
    from lstmjax.experiment.schedule import Job, Placement
    from lstmjax.experiment.sweep import expand
    trial = expand(cfg("", ["train.data_parallel=true"]))[0]
    dp = runner.compile_job(Job((trial,)), {}, Placement(tuple(jax.devices()), True))
    text = dp.chunk.as_text()
    found["dp_all_reduce"] = "all-reduce" in text
    plain = runner.compile_job(Job((trial,)), {}, Placement(tuple(jax.devices()[:1]), True))
    found["one_device_all_reduce"] = "all-reduce" in plain.chunk.as_text()
    try:
        run(cfg("", ["train.data_parallel=true", "train.batch_size=3"]), out / "odd", devices=2)
        found["odd_batch"] = None
    except Exception as e:
        found["odd_batch"] = f"{type(e).__name__}: {e}"
    found["odd_wrote_nothing"] = not (out / "odd").exists()

    # a trial that raises on one device: the others finish, the report is written
    from lstmjax.experiment import job as job_module
    def failing(job, ctx, slot):
        if job.trials[0].name == "cell-rnn":
            raise ValueError("injected failure")
        return job_module.train_job(job, ctx, slot)
    f = run(cfg(grid), out / "fail", devices=2, raise_failures=False, train_job=failing)
    found["failed"] = f["failed"]
    found["finished_after_failure"] = sorted(t["trial"] for t in f["trials"])
    found["failed_file"] = (out / "fail" / "cell-rnn" / "failed.json").exists()
    found["report_after_failure"] = (out / "fail" / "report.md").read_text()
    g = run(cfg(grid), out / "fail", devices=2, resume=True, report=False)
    found["retried"] = sorted(t["trial"] for t in g["trials"])
    found["failed_file_after_retry"] = (out / "fail" / "cell-rnn" / "failed.json").exists()
    # the retried trial trains alone, so its seeds are sharded over both devices
    found["retry_same"] = close(metrics(out / "fail"), metrics(out / "grid1"))

    # a gap frontier whose probes are extended while still learning (max_budget): the same
    # probes, budgets, metrics and frontier on one device and on two
    front = ("sweep: {model.cell: [gru, rnn]}\n"
             "frontier: {start: 3, max: 12, factor: 2, resolution: 0.5, min_solved: 0.5,"
             " max_budget: 240}\n")
    fr1 = run(cfg(front), out / "front1", devices=1, report=False)
    fr2 = run(cfg(front), out / "front2", devices=2, report=False)
    found["frontier_same"] = (metrics(out / "front1") == metrics(out / "front2")
                              and fr1["frontier"] == fr2["frontier"])
    found["frontier_raised"] = sorted(
        (t["trial"], t["budget_raised_from"], t["steps"]) for t in fr2["trials"]
        if t["budget_raised_from"] is not None)

    # interrupted with two devices, resumed with two: the same metrics as one device
    class Stop(Reporter):
        def update(self, step, loss, solved, diverged):
            if step >= 40:
                raise KeyboardInterrupt
    try:
        run(cfg(grid), out / "cut", devices=2, progress=Stop(), report=False)
        found["interrupted"] = False
    except KeyboardInterrupt:
        found["interrupted"] = True
    run(cfg(grid), out / "cut", devices=2, resume=True, report=False)
    found["resume_same"] = metrics(out / "cut") == metrics(out / "grid1")
    print(json.dumps(found))
""")


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices")
    (out / "base.yaml").write_text(BASE)
    script = out / "scenarios.py"
    script.write_text(_SCENARIOS)
    proc = subprocess.run([sys.executable, str(script), str(out), str(out / "base.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_cpu_devices_are_used(two_devices):
    assert len(two_devices["devices"]) == 2
    assert two_devices["grid_devices"] == ["cpu:0", "cpu:1"]


def test_whole_trials_give_identical_metrics_whatever_the_device_count(two_devices):
    assert two_devices["grid_trials"] == ["cell-gru", "cell-rnn"]
    assert two_devices["grid_same"]


def test_sharded_seeds_give_the_same_outcomes(two_devices):
    one, two = two_devices["sharded"]
    assert [(s["solved"], s["steps_to_solve"]) for s in one] == [
        (s["solved"], s["steps_to_solve"]) for s in two]
    m1, m2 = two_devices["sharded_metrics"]
    assert [(m["step"], m["seed"]) for m in m1] == [(m["step"], m["seed"]) for m in m2]
    for a, b in zip(m1, m2, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-9)


def test_a_frontier_extending_its_probes_decides_the_same_on_one_device_and_two(two_devices):
    assert two_devices["frontier_same"]
    assert two_devices["frontier_raised"], "no probe was extended: the check says nothing"
    assert all(raised < steps <= 240 for _, raised, steps in two_devices["frontier_raised"])


def test_a_failing_trial_fails_alone_and_is_retried_by_resume(two_devices):
    assert [f["trial"] for f in two_devices["failed"]] == ["cell-rnn"]
    assert "ValueError: injected failure" in two_devices["failed"][0]["error"]
    assert two_devices["finished_after_failure"] == ["cell-gru"]
    assert two_devices["failed_file"]
    assert "failed: ValueError: injected failure" in two_devices["report_after_failure"]
    assert two_devices["retried"] == ["cell-gru", "cell-rnn"]
    assert not two_devices["failed_file_after_retry"]
    assert two_devices["retry_same"]


def test_data_parallel_splits_the_batch_and_matches_one_device(two_devices):
    assert two_devices["dp_same"]
    assert two_devices["dp_devices"] == ["cpu:0", "cpu:1"]
    # the gradient of a split batch needs a cross-device reduction; one device has none
    assert two_devices["dp_all_reduce"] and not two_devices["one_device_all_reduce"]
    assert two_devices["odd_batch"] == (
        "ConfigError: train.batch_size: 3 does not split over 2 devices for data_parallel; "
        "use a multiple of 2 or --devices with a divisor of 3")
    assert two_devices["odd_wrote_nothing"]


def test_interrupted_run_on_two_devices_resumes_to_identical_metrics(two_devices):
    assert two_devices["interrupted"]
    assert two_devices["resume_same"]


def test_default_is_every_local_device():
    assert select_devices(None) == jax.local_devices()
