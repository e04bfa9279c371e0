"""Cells and tasks from other packages: an installed distribution's entry points (groups
``lstmjax.cells``, ``lstmjax.tasks``) and a config's ``imports:`` / ``--import``. The registry
is process-global, so every scenario runs in fresh subprocesses, with a package laid out in a
temporary directory (its ``*.dist-info`` is what ``importlib.metadata`` finds on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CELLS = """\
import lstmjax as lj
lj.cells.register("peep_janet", lj.cells.LSTMCell, "forget-gate peephole LSTM",
                  peepholes=("f",))
"""
TASKS = """\
import dataclasses
import lstmjax as lj
from lstmjax.tasks.adding import AddingTask

@dataclasses.dataclass(frozen=True)
class ShortAdding(AddingTask):
    name = "short_adding"

def register():
    lj.tasks.register(ShortAdding)
"""
CONFIG = """\
name: plug
task: {name: short_adding, length: 6}
model: {cell: peep_janet, hidden_size: 4}
train: {steps: 20, eval_every: 10, batch_size: 4, eval_batch_size: 8, seeds: 2}
diagnostics: {every: 10, batch_size: 4, num_probes: 2}
output: {progress: none, plots: false}
"""


def _package(root: Path, name: str, modules: dict[str, str], entry_points: str = "") -> Path:
    site = root / "site"
    (site / name).mkdir(parents=True, exist_ok=True)
    (site / name / "__init__.py").write_text("")
    for module, text in modules.items():
        (site / name / f"{module}.py").write_text(text)
    if entry_points:
        info = site / f"{name}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return site


def _run(args: list[str], site: Path | None, cwd: Path, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    paths = [str(site)] if site else []
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


READ_BACK = """\
import sys
from lstmjax import cli
import lstmjax as lj
run = sys.argv[1]
assert cli.main(["report", run]) == 0
assert cli.main(["diagnose", run]) == 0
df = lj.experiment.load_results(run)
print("ROWS", len(df), sorted(set(df["cell"])), sorted(set(df["task"])))
"""


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plug")
    site = _package(tmp, "myplug", {"cells": CELLS, "tasks": TASKS}, """\
        [lstmjax.cells]
        janet = myplug.cells
        [lstmjax.tasks]
        short = myplug.tasks:register
        """)
    (tmp / "plug.yaml").write_text(CONFIG)
    ran = _run(["-m", "lstmjax", "run", "plug.yaml", "--out", "run"], site, tmp)
    return tmp, site, ran


def test_an_entry_point_cell_and_task_train_from_yaml(plugin_run):
    tmp, _, ran = plugin_run
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp / "run" / "default" / "summary.json").exists()


def test_report_diagnose_and_load_results_work_in_a_fresh_process(plugin_run):
    tmp, site, _ = plugin_run
    got = _run(["-c", READ_BACK, str(tmp / "run")], site, tmp)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "ROWS 2 ['peep_janet'] ['short_adding']" in got.stdout
    assert "damaged" not in got.stderr


def test_without_the_plugin_the_run_is_still_read_and_diagnose_says_what_to_import(plugin_run):
    tmp, _, _ = plugin_run
    read = _run(["-c", "import sys, lstmjax as lj; print('ROWS', len(lj.experiment."
                 "load_results(sys.argv[1])))", str(tmp / "run")], None, tmp)
    assert read.returncode == 0 and "ROWS 2" in read.stdout, read.stderr[-2000:]
    report = _run(["-m", "lstmjax", "report", str(tmp / "run"), "--out", "elsewhere"], None, tmp)
    assert report.returncode == 0, report.stderr[-2000:]
    got = _run(["-m", "lstmjax", "diagnose", str(tmp / "run")], None, tmp)  # rebuilds cells
    assert got.returncode != 0 and "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" not in lines[0]
    assert "unknown task 'short_adding'" in lines[0] or "unknown cell 'peep_janet'" in lines[0]
    assert "imports: [module]" in lines[0] and "--import MODULE" in lines[0]


def test_imports_in_the_config_are_recorded_and_reimported(tmp_path):
    site = _package(tmp_path, "owncells", {"janet2": CELLS.replace("peep_janet", "janet2")})
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("short_adding", "adding").replace("peep_janet", "janet2")
        .replace("diagnostics: {every: 10, batch_size: 4, num_probes: 2}\n", ""))
    ran = _run(["-m", "lstmjax", "run", "c.yaml", "--out", "run", "--import",
                "owncells.janet2"], site, tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "owncells.janet2" in (tmp_path / "run" / "config.yaml").read_text()
    again = _run(["-m", "lstmjax", "report", "run"], site, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    # without the module: the run is still read (one warning), but resuming needs it
    read = _run(["-m", "lstmjax", "report", "run"], None, tmp_path)
    assert read.returncode == 0 and "Traceback" not in read.stderr
    assert "imports: no module named 'owncells.janet2'" in read.stderr
    resume = _run(["-m", "lstmjax", "run", "run/config.yaml", "--out", "run", "--resume"], None,
                  tmp_path)
    assert resume.returncode == 2 and "Traceback" not in resume.stderr
    assert resume.stderr.strip().splitlines() == [
        "error: imports: no module named 'owncells.janet2'; install the package that provides "
        "it or put its directory on PYTHONPATH"]


HOSTILE = """\
import sys
from lstmjax import cli
for args in (["--import", "not a module"], ["--import", "nosuch_module_xyz"],
             ["--import", "badplug.boom"]):
    print("RC", cli.main(["run", sys.argv[1], "--out", sys.argv[2], *args]))
"""


def test_bad_modules_raising_plugins_and_taken_names_are_one_line(tmp_path):
    site = _package(tmp_path, "badplug", {
        "boom": "raise RuntimeError('plugin exploded')\n",
        "dupe": "import lstmjax as lj\nlj.cells.register('lstm', lj.cells.LSTMCell, 'again')\n",
    }, """\
        [lstmjax.cells]
        dupe = badplug.dupe
        """)
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("short_adding", "adding").replace("peep_janet", "lstm"))
    got = _run(["-c", HOSTILE, "c.yaml", "out"], site, tmp_path)
    assert "Traceback" not in got.stderr, got.stderr[-2000:]
    assert got.stdout.split() == ["RC", "2"] * 3
    errors = got.stderr.strip().splitlines()
    assert errors[0] == ("error: imports: 'not a module' is not a module name "
                         "(e.g. my_package.cells)")
    assert "no module named 'nosuch_module_xyz'" in errors[1]
    assert "importing 'badplug.boom' failed: RuntimeError: plugin exploded" in errors[2]
    assert not (tmp_path / "out").exists()
    # listing the cells loads the entry points: a plugin that registers an existing name is
    # named in one line
    listed = _run(["-m", "lstmjax", "list", "cells"], site, tmp_path)
    assert listed.returncode != 0 and "Traceback" not in listed.stderr
    assert ("entry point dupe = 'badplug.dupe' of group lstmjax.cells (from badplug 0.1) "
            "failed: ValueError: cell 'lstm' is already registered") in listed.stderr
