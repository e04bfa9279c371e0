"""Loggers (output.loggers): TensorBoard event files and W&B offline runs hold what
metrics.jsonl holds -- also across an interrupted and resumed run, with no duplicate points --;
a logger that fails mid-run is reported once and the run goes on; a missing package is a
one-line error before anything is written. Tiny: rnn, hidden 8, gap 4, 20 steps, 2 seeds."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import sys
from pathlib import Path

import pytest
from _reporters import InterruptAfter

from lstmjax import cli
from lstmjax.experiment import ConfigError, load_config, loggers, read_metrics, run

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 8}
train: {optimizer: sgd, momentum: 0.0, grad_clip: null, learning_rate: 0.01,
        batch_size: 4, steps: 20, eval_every: 10, eval_batch_size: 8, seeds: 2}
diagnostics: {every: 10, batch_size: 4, num_probes: 2}
output: {checkpoint_every: 10, progress: none, plots: false, loggers: [jsonl, tensorboard, wandb]}
"""
HAVE_WANDB = True
try:
    import wandb  # noqa: F401
except ImportError:
    HAVE_WANDB = False
if not HAVE_WANDB:  # the W&B half of the test needs the optional package
    TINY = TINY.replace(", wandb]", "]")


# ---- reading the files back ------------------------------------------------------------------


def _event_files(logdir: Path) -> list[list]:
    """The events of each TFRecord file of a TensorBoard run, files in name order (TensorBoard's
    reading order)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, pos, events = path.read_bytes(), 0, []
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12:pos + 12 + n])
            events.append(event)
            pos += 12 + n + 4  # length, its crc, the record, its crc
        out.append(events)
    return out


# metrics.jsonl key -> logger tag, for the optimisation keys (every other key is eval/<key>)
_TAGS = {"train_loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/lr",
         "updates": "train/updates", "diverged": "train/diverged"}


def _scalars(logdir: Path) -> dict[tuple[str, int], list[float]]:
    """{(tag, step): values} as TensorBoard shows them: a SessionLog START at step s (a resumed
    writer's purge_step) hides the points at steps >= s written before it."""
    from tensorboardX.proto.event_pb2 import SessionLog

    points: dict[tuple[str, int], list[float]] = {}
    for events in _event_files(logdir):
        for e in events:
            if e.HasField("session_log") and e.session_log.status == SessionLog.START:
                points = {k: v for k, v in points.items() if k[1] < e.step}
            for v in e.summary.value:
                if v.HasField("simple_value"):
                    points.setdefault((v.tag, e.step), []).append(v.simple_value)
    return points


def _wandb_records(path: Path):
    """The protobuf records of a W&B transaction log (``run-*.wandb``): a 7-byte header, then
    32 KiB blocks of LevelDB-log records (crc, length, type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # block padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record


def _wandb_run(path: Path) -> tuple[dict, dict, dict[int, dict]]:
    """(run fields, config, {step: history row}) of an offline run's transaction log."""
    def items(update):  # a key is `key`, or `nested_key` in newer versions
        return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in update}

    info, config, history = {}, {}, {}
    for r in _wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info = {"name": r.run.display_name, "group": r.run.run_group,
                    "project": r.run.project}
            config.update(items(r.run.config.update))
        elif kind == "config":
            config.update(items(r.config.update))
        elif kind == "history":
            row = items(r.history.item)
            history[int(row["_step"])] = row
    return info, config, history


# ---- a run interrupted between checkpoints, then resumed with a logger that fails -------------


class _Failing(loggers.Sink):
    """Raises at its second record (a disk filling up mid-run)."""

    name = "failing"

    def __init__(self):
        self.calls = 0
        self.closed = False

    def log(self, trial, seed, step, scalars):
        self.calls += 1
        if self.calls == 2:
            raise OSError(28, "No space left on device")

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    pytest.importorskip("tensorboardX")  # the optional extra lstmjax[tensorboard]
    tmp = tmp_path_factory.mktemp("loggers")
    path = tmp / "tiny.yaml"
    path.write_text(TINY)
    cfg = load_config(path)
    out = tmp / "run"
    failing = _Failing()
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            mp.setenv(var, str(tmp / "wandb-home"))  # nothing written to the real home
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out_dir=out, progress=InterruptAfter(2))
        first = {p.name for p in (out / "wandb").glob("offline-run-*")} if HAVE_WANDB else set()
        make = loggers.make_sinks
        mp.setattr(loggers, "make_sinks", lambda c, d: [*make(c, d), failing])
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            result = run(cfg, out_dir=out, resume=True)
    return out, result, err.getvalue(), failing, first


def test_tensorboard_shows_each_metric_once_as_in_metrics_jsonl(resumed):
    out, result, _, _, _ = resumed
    assert result["trials"][0]["resumed_from_step"] == 10
    lines = read_metrics(out / "default" / "metrics.jsonl")
    assert sorted({(m["step"], m["seed"]) for m in lines}) == [(10, 0), (10, 1), (20, 0), (20, 1)]
    for seed in (0, 1):
        logdir = out / "tensorboard" / "default" / f"seed-{seed}"
        files = _event_files(logdir)
        assert len(files) == 2  # the interrupted process's file and the resumed one's
        # the interrupted process had logged step 20 (after its checkpoint at 10) ...
        assert any(v.tag == "eval/loss" and e.step == 20 for e in files[0]
                   for v in e.summary.value)
        # ... the resumed one purges from step 11 on, so step 20 shows once
        shown = _scalars(logdir)
        assert all(len(v) == 1 for v in shown.values()), shown
        mine = [m for m in lines if m["seed"] == seed]
        expected = {(_TAGS.get(k, f"eval/{k}"), m["step"]): float(v) for m in mine
                    for k, v in m.items() if k not in ("step", "seed") and v is not None}
        assert all(k[0].split("/")[0] in ("train", "eval", "diag") for k in shown)
        got = {k: v[0] for k, v in shown.items() if not k[0].startswith("diag/")}
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-6), key


def test_tensorboard_has_diagnostics_and_hparams(resumed):
    out = resumed[0]
    text = (out / "default" / "diagnostics.jsonl").read_text()
    diag = [json.loads(s) for s in text.splitlines()]
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    for seed in (0, 1):
        logdir = out / "tensorboard" / "default" / f"seed-{seed}"
        shown = _scalars(logdir)
        gains = {step: v[0] for (tag, step), v in shown.items()
                 if tag == "diag/log10_gain_max_lag"}
        expected = {d["step"]: d["gradient_flow"]["log10_gain"][-1] for d in diag
                    if d["seed"] == seed}
        assert sorted(gains) == sorted(expected) == [0, 10, 20]
        for step, g in expected.items():
            assert gains[step] == pytest.approx(g, abs=1e-6)
        starts = []
        for events in _event_files(logdir):
            for e in events:
                for v in e.summary.value:
                    if v.tag == "_hparams_/session_start_info":
                        data = HParamsPluginData.FromString(v.metadata.plugin_data.content)
                        starts.append(data.session_start_info.hparams)
        assert len(starts) == 1  # written once, by the first process
        hp = starts[0]
        assert hp["seed"].number_value == seed
        assert hp["model.cell"].string_value == "rnn"
        assert hp["task.length"].number_value == 4
        assert hp["train.learning_rate"].number_value == pytest.approx(0.01)


@pytest.mark.skipif(not HAVE_WANDB, reason="wandb (the optional extra lstmjax[wandb]) missing")
def test_wandb_offline_runs_hold_config_and_history(resumed):
    out, _, _, _, first = resumed
    runs = {p.name: p for p in (out / "wandb").glob("offline-run-*")}
    assert len(first) == 1 and len(runs) == 2
    (before,) = [_wandb_run(next(runs[n].glob("run-*.wandb"))) for n in first]
    (after,) = [_wandb_run(next(p.glob("run-*.wandb"))) for n, p in runs.items()
                if n not in first]
    lines = read_metrics(out / "default" / "metrics.jsonl")
    for info, config, _ in (before, after):
        assert info == {"name": "default", "group": "tiny", "project": "lstmjax"}
        assert config["model"]["cell"] == "rnn" and config["task"]["length"] == 4
        assert config["train"]["seeds"] == [0, 1]
    assert before[1]["resumed_from_step"] is None and after[1]["resumed_from_step"] == 10
    assert sorted(before[2]) == [0, 10, 20]  # diagnostics at 0; interrupted after step 20
    assert sorted(after[2]) == [20]  # only what came after the checkpoint
    for m in lines:
        history = after[2] if m["step"] > 10 else before[2]
        row = history[m["step"]]
        for key, name in (("loss", "eval/loss"), ("accuracy", "eval/accuracy"),
                          ("train_loss", "train/loss"), ("grad_norm", "train/grad_norm")):
            assert row[f"seed-{m['seed']}/{name}"] == pytest.approx(m[key], rel=1e-6)
        assert row[f"seed-{m['seed']}/eval/solved"] == float(m["solved"])
    assert "seed-0/diag/log10_gain_max_lag" in after[2][20]
    assert not list((out / "wandb").glob("latest-run"))  # no links besides wandb's own logs


def test_failing_logger_warns_once_and_the_run_completes(resumed):
    out, result, err, failing, _ = resumed
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: output.loggers: failing failed (OSError: [Errno 28] No space left on device);"
        " it is off for the rest of the run (metrics.jsonl has every record)"
    ]
    assert failing.calls == 2 and failing.closed
    assert (out / "default" / "summary.json").exists()
    assert (out / "results.csv").exists()
    assert len(read_metrics(out / "default" / "metrics.jsonl")) == 4
    assert result["trials"][0]["steps"] == 20


# ---- without training ------------------------------------------------------------------------


def test_missing_package_is_one_line_error_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails: not installed
    msg = ("output.loggers: tensorboard needs the optional package tensorboardX: "
           "pip install 'lstmjax[tensorboard]'")
    with pytest.raises(ConfigError) as e:
        run(load_config(path), out_dir=tmp_path / "run")
    assert str(e.value) == msg
    assert cli.main(["run", str(path), "--out", str(tmp_path / "cli")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {msg}"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()


def test_loggers_config():
    from lstmjax.experiment import from_dict

    base = {"task": {"name": "adding", "length": 4}}
    assert from_dict(base).output.loggers == ("jsonl",)
    assert from_dict(base).output.wandb.mode == "offline"
    cfg = from_dict({**base, "output": {"loggers": "tensorboard",
                                        "wandb": {"mode": "online", "project": "p"}}})
    assert cfg.output.loggers == ("tensorboard",) and cfg.output.wandb.project == "p"
    for output, msg in (
        ({"loggers": ["tb"]}, "output.loggers.0: 'tb' is not one of jsonl, tensorboard, wandb"),
        ({"loggers": ["wandb", "wandb"]}, "output.loggers: 'wandb' is listed twice"),
        ({"wandb": {"mode": "cloud"}}, "output.wandb.mode: 'cloud' is not one of offline, online"),
    ):
        with pytest.raises(ConfigError, match="^" + msg.replace("(", r"\(").replace(".", r"\.")):
            from_dict({**base, "output": output})


def test_scalars_of_records():
    line = {"step": 10, "seed": 1, "loss": 0.5, "solved": True, "accuracy": None, "updates": 10}
    assert loggers.metric_scalars(line) == {"eval/loss": 0.5, "eval/solved": 1.0,
                                            "train/updates": 10.0}
    train = {"step": 10, "seed": 0, "train_loss": 0.7, "grad_norm": 2.0, "lr": 0.01,
             "diverged": False, "symbol_accuracy": 0.5}
    assert loggers.metric_scalars(train) == {
        "train/loss": 0.7, "train/grad_norm": 2.0, "train/lr": 0.01, "train/diverged": 0.0,
        "eval/symbol_accuracy": 0.5}
    diag = {"step": 0, "seed": 0,
            "gradient_flow": {"lag": [0, 1, 2], "log10_gain": [0.0, -0.5, None]},
            "gates": {"gates": {"z": {"mean": 0.25, "frac_low": 0.0, "frac_high": 0.125}},
                      "keep_gate": "1-z", "timescale": {"median": 2.0}}}
    assert loggers.diagnostic_scalars(diag) == {
        "diag/gate_z_mean": 0.25, "diag/gate_z_frac_low": 0.0,
        "diag/gate_z_frac_high": 0.125, "diag/keep_gate_mean": 0.75,
        "diag/timescale_median": 2.0,
    }  # the gain at the largest lag is non-finite (null): left out


def test_a_failing_sink_is_dropped_and_the_others_get_every_record(capsys):
    class Keep(loggers.Sink):
        name = "keep"

        def __init__(self):
            self.got = []

        def log(self, trial, seed, step, scalars):
            self.got.append((seed, step))

    class Broken(loggers.Sink):
        name = "broken"

        def open_trial(self, trial, *, resumed_from=None):
            raise RuntimeError("no network\nat all")

        def log(self, trial, seed, step, scalars):
            raise AssertionError("never called after failing")

    keep = Keep()
    fan = loggers.Loggers([Broken(), keep])
    fan.open_trial(None)
    fan.metrics(None, [{"step": 10, "seed": 0, "loss": 1.0}, {"step": 10, "seed": 1, "loss": 2}])
    fan.metrics(None, [{"step": 20, "seed": 0, "loss": 1.0}])
    fan.close_trial(None)
    fan.close()
    assert keep.got == [(0, 10), (1, 10), (0, 20)]
    assert capsys.readouterr().err.splitlines() == [
        "warning: output.loggers: broken failed (RuntimeError: no network at all); it is off "
        "for the rest of the run (metrics.jsonl has every record)"
    ]


def test_trials_open_at_once_log_into_their_own_runs(tmp_path):
    """A learning-rate group trains two trials as one program, so both are open in the sinks
    at once: each trial's event files must hold its own metrics.jsonl, nothing of the other."""
    text = (TINY.replace(", wandb]", "]").replace("diagnostics: {every: 10, batch_size: 4, "
                                                   "num_probes: 2}\n", "")
            + "sweep: {train.learning_rate: [0.01, 0.1]}\n")
    path = tmp_path / "g.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    run(load_config(path), out_dir=out, report=False)
    for trial in ("learning_rate-0.01", "learning_rate-0.1"):
        for seed in (0, 1):
            points = _scalars(out / "tensorboard" / trial / f"seed-{seed}")
            lines = [m for m in read_metrics(out / trial / "metrics.jsonl") if m["seed"] == seed]
            assert lines
            for m in lines:
                assert points[("eval/loss", m["step"])] == pytest.approx([m["loss"]], rel=1e-6)
                assert points[("train/lr", m["step"])] == pytest.approx([m["lr"]], rel=1e-6)
