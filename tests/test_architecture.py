"""The house rules that a refactor must not undo: no import cycle between lstmjax's modules
(imports inside functions included), dependencies pointing one way, and config loading that
builds each distinct cell and task at most once per trial."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lstmjax"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> lstmjax modules it imports anywhere in its source (functions included)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                # `from pkg import mod` imports the submodule pkg.mod when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t.startswith("lstmjax") and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    graph = _import_graph()
    assert "lstmjax.experiment.report" in graph and "lstmjax.experiment.runner" in graph
    assert _cycles(graph) == []


LAYERS = ["cells", "rnn", "train", "experiment", "cli"]  # dependencies point left


@pytest.mark.parametrize("lower,higher", [
    (a, b) for i, a in enumerate(LAYERS) for b in LAYERS[i + 1:]
])
def test_lower_layers_never_import_higher_ones(lower, higher):
    graph = _import_graph()
    for module, deps in graph.items():
        if module == f"lstmjax.{lower}" or module.startswith(f"lstmjax.{lower}."):
            top = f"lstmjax.{higher}"
            bad = [d for d in deps if d == top or d.startswith(top + ".")]
            assert not bad, f"{module} imports {bad}"


def test_report_and_runner_do_not_import_each_other():
    graph = _import_graph()
    assert "lstmjax.experiment.runner" not in graph["lstmjax.experiment.report"]
    assert "lstmjax.experiment.report" not in graph["lstmjax.experiment.runner"]


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


TRAINING = {f"lstmjax.experiment.{m}" for m in ("executor", "job", "trial_run", "runner", "api")}


def test_the_training_loop_points_one_way():
    """cli -> api -> executor -> {job -> trial_run}, search, ...; search never reaches the
    executor (nor job, trial_run), job never the executor, trial_run neither of them."""
    graph = _import_graph()
    for module in [m for m in graph if m.startswith("lstmjax.experiment.search")]:
        assert not _reaches(graph, module) & TRAINING, module
    assert "lstmjax.experiment.executor" not in _reaches(graph, "lstmjax.experiment.job")
    assert not {"lstmjax.experiment.executor", "lstmjax.experiment.job"} & _reaches(
        graph, "lstmjax.experiment.trial_run")
    assert "lstmjax.experiment.job" in graph["lstmjax.experiment.executor"]
    assert "lstmjax.experiment.search" in graph["lstmjax.experiment.executor"]
    assert "lstmjax.experiment.executor" in graph["lstmjax.experiment.api"]
    for reader in ("report", "diagnose", "resources"):  # they replay the search
        assert not _reaches(graph, f"lstmjax.experiment.{reader}") & TRAINING, reader


def test_only_config_and_search_read_the_search_method():
    import re

    allowed = {"config.py", "validate.py", "schema.py", "search/__init__.py"}  # (validate.py:
    # config.py's validation, split off it)
    pattern = re.compile(r"search.method|cfg.frontier")
    root = ROOT / "experiment"
    found = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
             if p.relative_to(root).as_posix() not in allowed
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert found == []


def test_experiment_modules_stay_small():
    """No module of the experiment layer but the report exceeds 450 lines; runner.py is a
    re-exporting shim."""
    root = ROOT / "experiment"
    sizes = {p.relative_to(root).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in root.rglob("*.py")}
    assert {k: n for k, n in sizes.items() if n > 450 and k != "report.py"} == {}
    assert sizes["runner.py"] < 60


def test_experiment_report_is_a_module():
    import importlib
    import types

    mod = importlib.import_module("lstmjax.experiment.report")
    assert isinstance(mod, types.ModuleType) and hasattr(mod, "write_report")


GRID = """\
name: grid
task: {name: adding, length: 100}
model: {cell: lstm, hidden_size: 32, options: {forget_bias: 1.0}}
train: {seeds: 3}
sweep: {model.cell: [rnn, lstm, peephole, cifg, gru], task.length: [25, 50, 100, 200]}
"""


@pytest.mark.parametrize("which", ["quickstart", "grid"])
def test_loading_builds_each_cell_and_task_at_most_once_per_trial(monkeypatch, tmp_path, which):
    """Every construction of a cell or a task while a config loads is counted: at most one per
    trial validated (the quickstart's frontier validates each variant at its first and
    largest gap; the grid is the former 20-trial quickstart, 5 cells x 4 gaps)."""
    from lstmjax import cells, experiment
    from lstmjax.cells._base import Cell
    from lstmjax.tasks.base import Task

    cells._accepts.cache_clear()  # count the option probes too
    counts = {"cell": 0, "task": 0}
    cell_post, task_post = Cell.__post_init__, Task.__post_init__

    def count_cell(self):
        counts["cell"] += 1
        cell_post(self)

    def count_task(self):
        counts["task"] += 1
        task_post(self)

    monkeypatch.setattr(Cell, "__post_init__", count_cell)
    monkeypatch.setattr(Task, "__post_init__", count_task)
    # (cells and tasks whose classes define their own __post_init__ call super()'s)
    if which == "quickstart":
        path = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    else:
        path = tmp_path / "grid.yaml"
        path.write_text(GRID)
    cfg = experiment.load_config(path)
    if cfg.frontier is not None:
        n_trials = 2 * len(experiment.expand(cfg))  # each variant at start and at max
        assert n_trials == 6
    else:
        n_trials = len(experiment.expand(cfg))
        assert n_trials == 20
    assert 0 < counts["cell"] <= n_trials, counts
    assert 0 < counts["task"] <= n_trials, counts
