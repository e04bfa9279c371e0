"""Property: random junk configs and random ``--set`` strings never produce a traceback, never
write outside the run directory, and never change a pre-existing directory's files (none of the
directories here is a valid run directory). Training itself is stubbed out: a config that passes
every check reaches the first trial and stops there."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmjax import cli
from lstmjax.experiment import job

BASE = {
    "name": "prop",
    "task": {"name": "adding", "length": 4},
    "model": {"cell": "rnn", "hidden_size": 8},
    "train": {"steps": 20, "eval_every": 10, "batch_size": 4, "eval_batch_size": 8, "seeds": 2},
    "output": {"progress": "none", "plots": False},
}
KEYS = [
    "name", "description", "task", "task.name", "task.length", "task.tolerance", "model",
    "model.cell", "model.hidden_size", "model.num_layers", "model.options",
    "model.options.forget_bias", "model.options.dtype", "model.dropout", "train",
    "train.learning_rate", "train.steps", "train.eval_every", "train.seeds", "train.batch_size",
    "train.optimizer", "sweep", "sweep.model.cell", "sweep.task.length", "output",
    "output.dir", "output.checkpoint_every", "frontier", "junk", "model.junk", "train.steps.x",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["lstm", "gru", "rnn", "adding", "copy", "float64", "../x", "/tmp", "~"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


class _Stop(BaseException):  # not a trial failure: it stops the run
    """Raised instead of training: the config passed every check."""


def _stop(*args, **kwargs):
    raise _Stop


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                   else "dir")
        for p in sorted(root.rglob("*"))
    }


def _set(raw: dict, key: str, value) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _check(root: Path, text: str, overrides: list[str], existing: bool, resume: bool, capsys):
    out = root / "run"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        (out / ".draft.tmp").write_text("mine")
    config = root / "c.yaml"
    config.write_text(text)
    before = _tree(root)
    argv = ["run", str(config), "--out", str(out), "--progress", "none"]
    argv += [f"--set={o}" for o in overrides]  # (argparse reads a bare "-x" as an option)
    if resume:
        argv.append("--resume")
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except _Stop:
        rc = None
    err = capsys.readouterr().err
    assert "Traceback" not in err
    after = _tree(root)
    # nothing outside the run directory changed
    outside = lambda tree: {k: v for k, v in tree.items() if not k.startswith("run")}  # noqa: E731
    assert outside(after) == outside(before)
    if rc is not None:
        lines = [ln for ln in err.splitlines() if not ln.startswith("warning: ")]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert after == before  # refused: nothing written anywhere
    elif existing:
        # a pre-existing directory that is not a run directory is never trained into
        raise AssertionError(f"trained into a non-run directory: {argv}")
    if existing:
        assert after["run/notes.txt"] == before["run/notes.txt"]
        assert after["run/.draft.tmp"] == before["run/.draft.tmp"]


_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,  # the same cases in CI
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    edits=st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4),
    existing=st.booleans(),
    resume=st.booleans(),
)
def test_random_config_edits_never_traceback_or_escape(edits, existing, resume, capsys,
                                                       monkeypatch):
    monkeypatch.setattr(job, "train_job", _stop)  # the executor's seam
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in edits:
        _set(raw, key, value)
    text = yaml.safe_dump(raw, allow_unicode=True)
    with tempfile.TemporaryDirectory() as tmp:
        _check(Path(tmp), text, [], existing, resume, capsys)


@_SETTINGS
@given(
    text=st.text(max_size=200),
    overrides=st.lists(
        st.one_of(st.text(max_size=30),
                  st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=20))),
        max_size=3),
    existing=st.booleans(),
)
def test_random_text_and_overrides_never_traceback_or_escape(text, overrides, existing, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(job, "train_job", _stop)  # the executor's seam
    base = yaml.safe_dump(BASE) if len(text) % 2 else text  # junk files and junk overrides
    with tempfile.TemporaryDirectory() as tmp:
        _check(Path(tmp), base, overrides, existing, False, capsys)
