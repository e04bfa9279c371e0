"""The ``lstmjax`` command (also ``python -m lstmjax``)::

    lstmjax run CONFIG [--set key=value ...] [--out DIR] [--resume] [--force-unlock]
                       [--progress MODE]
    lstmjax report RUN_DIR [--out DIR] [--no-plots]
    lstmjax diagnose RUN_DIR
    lstmjax list cells|tasks
    lstmjax bench [--quick]

Config and run-directory problems print ``error: <key.path>: <problem>`` and exit with status 2,
without a traceback and without writing anything. Process-global settings are made here, at
program entry, never at library import: the allocator tuning and, for float64 configs, 64-bit
JAX.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmjax", description="Compare recurrent cells on long-gap tasks."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="train every trial of an experiment config")
    p.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. configs/quickstart.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.learning_rate=3e-4 "
                   "(repeatable; setting a swept key pins it)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: <output.dir>/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="skip finished trials, continue unfinished ones from their checkpoints")
    p.add_argument("--force-unlock", action="store_true",
                   help="take over the run directory's lock (only if the process holding it "
                   "is gone, e.g. on another host)")
    p.add_argument("--progress", choices=["auto", "rich", "plain", "none"],
                   help="progress display (default: output.progress, 'auto')")

    p = sub.add_parser("report", help="write results.csv, report.md and plots for a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR",
                   help="write the report here instead of into RUN_DIR (e.g. a read-only run)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    p = sub.add_parser("diagnose", help="gradient flow and gate statistics of a finished run, "
                       "from its checkpoints, then the report with their plots")
    p.add_argument("run_dir", metavar="RUN_DIR")

    p = sub.add_parser("list", help="list the registered cells or tasks")
    p.add_argument("what", choices=["cells", "tasks"])

    sub.add_parser(
        "bench", help="speed benchmarks (benchmarks/, from the repository root); "
        "further arguments, e.g. --quick, are passed on"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from lstmjax.experiment.config import ConfigError

    try:
        return _COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `lstmjax list tasks | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silence the flush at exit
        return 0
    except OSError as e:  # a file system refusing a write (full disk, read-only, ...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with `lstmjax run CONFIG --resume`", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    """Control characters a user typed (a newline in a key, a stray carriage return) shown as
    escapes, so an error is always one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


def _run(args) -> int:
    from lstmjax import experiment
    from lstmjax._allocator import keep_freed_memory
    from lstmjax.experiment.runner import needs_x64

    keep_freed_memory()  # this process only: reuse pages across steps (lstmjax/_allocator.py)

    cfg = experiment.load_config(args.config, overrides=args.overrides)
    if needs_x64(cfg):
        import jax

        jax.config.update("jax_enable_x64", True)  # program entry: before any array exists
    result = experiment.run(
        cfg, out_dir=args.out, resume=args.resume, progress=args.progress, report=True,
        force_unlock=args.force_unlock,
    )
    rep = result["report"]
    print()
    if "frontier_table" in rep:
        print(rep["frontier_table"])
    print(rep["table"])
    print(rep["finding"])
    print()
    print(f"run directory: {result['run_dir']}  ({result['wall_time_s']:.1f} s)")
    print(f"report: {rep['report']}")
    print(f"results: {rep['results']}")
    for path in rep["plots"]:
        print(f"plot: {path}")
    return 0


def _report(args) -> int:
    from lstmjax import experiment

    if not os.path.isdir(args.run_dir):
        print(f"error: {args.run_dir}: no such run directory", file=sys.stderr)
        return 2
    rep = experiment.write_report(args.run_dir, plots=not args.no_plots, out=args.out)
    if "frontier_table" in rep:
        print(rep["frontier_table"])
    print(rep["table"])
    print(rep["finding"])
    print(f"report: {rep['report']}")
    for path in rep["plots"]:
        print(f"plot: {path}")
    return 0


def _diagnose(args) -> int:
    from lstmjax import experiment
    from lstmjax.experiment.diagnose import diagnose_run

    if not os.path.isdir(args.run_dir):
        print(f"error: {args.run_dir}: no such run directory", file=sys.stderr)
        return 2
    done = diagnose_run(args.run_dir)
    for message in done["skipped"]:
        print(f"warning: skipped {message}", file=sys.stderr)
    rep = experiment.write_report(args.run_dir)
    print(f"diagnosed {len(done['trials'])} trial(s); report: {rep['report']}")
    for path in rep["plots"]:
        print(f"plot: {path}")
    return 0


def _list(args) -> int:
    import lstmjax as lj

    if args.what == "cells":
        rows = lj.cells.describe()
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['summary']}")
    else:
        print(lj.tasks.format_table())
    return 0


def _bench(args) -> int:
    """The benchmarks of the checkout this lstmjax was installed from (``pip install -e .``):
    ``benchmarks/`` beside the ``lstmjax/`` package -- never whatever the current directory
    holds. A wheel install has none (they are not part of the package)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = os.path.join(root, "benchmarks")
    try:
        if "benchmarks.run" not in sys.modules:
            if not os.path.isfile(os.path.join(ours, "run.py")):
                raise ModuleNotFoundError(f"no {ours}")
            cached = sys.modules.get("benchmarks")
            if cached is not None and not getattr(cached, "__file__", "").startswith(ours):
                raise ModuleNotFoundError(f"another benchmarks package is imported ({cached})")
            sys.path.insert(0, root)  # ours first: never the current directory's benchmarks/
        module = importlib.import_module("benchmarks.run")
    except ModuleNotFoundError:
        print(
            "error: benchmarks not found: `lstmjax bench` runs benchmarks/run.py of the "
            f"repository checkout lstmjax is installed from ({root} has none); clone the "
            "repository and `pip install -e .` it, then run `lstmjax bench` or `make bench`",
            file=sys.stderr,
        )
        return 2
    rc = module.main(list(args.extra))
    return int(rc or 0)


_COMMANDS = {"run": _run, "report": _report, "diagnose": _diagnose, "list": _list,
             "bench": _bench}
