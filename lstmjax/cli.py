"""The ``lstmjax`` command (also ``python -m lstmjax``)::

    lstmjax run CONFIG [--set key=value ...] [--out DIR] [--resume] [--dry-run] [--force-unlock]
                       [--progress MODE] [--devices N] [--malloc auto|tuned|default]
                       [--coordinator HOST:PORT --num-processes P --process-id I]
                       [--coordinator auto]       (SLURM, Open MPI, Kubernetes, Cloud TPU)
                       [--startup-timeout SECONDS] [--peer-timeout SECONDS]
    lstmjax report RUN_DIR [--out DIR] [--no-plots]
    lstmjax diagnose RUN_DIR
    lstmjax list cells|tasks
    lstmjax config --reference
    lstmjax bench [--quick]

Config and run-directory problems print ``error: <key.path>: <problem>`` and exit with status 2,
without a traceback and without writing anything. Process-global settings are made here, at
program entry, never at library import: the allocator tuning (``--malloc``), XLA's optimisation
level (1: faster compiles, equal speed), on CPU one XLA device per core (so trials train
concurrently; ``--devices``), and, for float64 configs, 64-bit JAX.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

__all__ = ["main", "build_parser"]

STARTUP_TIMEOUT = 120.0  # s; lstmjax.experiment.hosts.STARTUP_TIMEOUT (not imported: cli is light)
PEER_TIMEOUT = 100.0  # s; lstmjax.experiment.hosts.PEER_TIMEOUT


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
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE before the config is validated, e.g. the package that "
                   "registers your own cells or tasks (repeatable; recorded in the run as "
                   "the config's imports:)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: <output.dir>/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="skip finished trials, continue unfinished ones from their checkpoints")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config, the trials (a search's first ones), the "
                   "options per variant, memory estimates, the programs to compile and the "
                   "run directory, checked as the run checks them; write nothing, train nothing")
    p.add_argument("--force-unlock", action="store_true",
                   help="take over the run directory's lock held by a process on another "
                   "host (whose liveness cannot be checked from here: make sure it is gone); "
                   "a live process on this host keeps its lock (a dead one's is taken anyway)")
    p.add_argument("--progress", choices=["auto", "rich", "plain", "none"],
                   help="progress display (default: output.progress, 'auto')")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several processes (hosts) on one shared --out directory: the "
                   "jax.distributed coordinator (process 0's address), or 'auto' to take "
                   "it, the process count and index from a SLURM / Open MPI / Kubernetes / "
                   "Cloud TPU job")
    p.add_argument("--num-processes", type=_positive_int, metavar="P",
                   help="with --coordinator: how many processes take part")
    p.add_argument("--process-id", type=int, metavar="I",
                   help="with --coordinator: this process's index, 0..P-1")
    p.add_argument("--startup-timeout", type=_seconds, metavar="SECONDS",
                   default=STARTUP_TIMEOUT,
                   help="with --coordinator: give up if the processes have not all joined "
                   f"within this time (default {STARTUP_TIMEOUT:g})")
    p.add_argument("--peer-timeout", type=_seconds, metavar="SECONDS", default=PEER_TIMEOUT,
                   help="with --coordinator: end the run (keeping the finished trials) when "
                   f"another process shows no sign of life for this long (default "
                   f"{PEER_TIMEOUT:g})")
    p.add_argument("--devices", type=_positive_int, metavar="N",
                   help="local devices to train on, one trial per device at a time (default: "
                   "output.devices, else all; on CPU one device per core)")
    p.add_argument("--malloc", choices=("auto", "tuned", "default"), default="auto",
                   help="glibc malloc: tuned keeps freed pages for the next step (no page "
                   "faults per step; the heap can grow to ~2-3x the working set), default is "
                   "glibc as is; auto (default): tuned unless a trial's memory estimate "
                   f"exceeds {KEEP_FREED_LIMIT // 2**20} MiB (long sequences)")
    p.add_argument("--compile-cache", metavar="auto|off|DIR",
                   help="JAX's persistent compilation cache: a repeated run or a --resume "
                   "loads the programs it compiled before (default: $LSTMJAX_COMPILE_CACHE, "
                   "else auto = $XDG_CACHE_HOME/lstmjax/xla, split by CPU)")

    p = sub.add_parser("report", help="write results.csv, report.md and plots for a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR",
                   help="write the report here instead of into RUN_DIR (e.g. a read-only run)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    p = sub.add_parser("diagnose", help="gradient flow and gate statistics of a finished run, "
                       "from its checkpoints, then the report with their plots")
    p.add_argument("run_dir", metavar="RUN_DIR")

    p = sub.add_parser("config", help="the config reference (every key, type, default and "
                       "meaning; task parameters; cell options)")
    p.add_argument("--reference", action="store_true", required=True,
                   help="print the reference as Markdown (docs/config.md is this output)")

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
    from lstmjax._plugins import PluginError
    from lstmjax.experiment.config import ConfigError

    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, PluginError) as e:
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device count (1 or more)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (above 0)")
    return value


XLA_OPT_LEVEL = "--xla_backend_optimization_level=1"


def tune_xla() -> None:
    """Program entry, before JAX initialises: XLA's backend optimisation level 1 instead of its
    default -- a training chunk compiles ~30% faster and runs as fast (benchmarks/RESULTS.md),
    and a sweep or gap frontier compiles one program per trial. Left alone when the user's
    ``XLA_FLAGS`` sets the level."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_OPT_LEVEL}".strip()


def split_cpu(devices: int | None) -> None:
    """Program entry, before JAX initialises: one XLA:CPU device per core (or ``devices`` of
    them), unless the user's ``XLA_FLAGS`` already set a host device count. Harmless on GPU
    and TPU hosts (it only shapes the CPU backend)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    from lstmjax.experiment.schedule import default_cpu_devices

    try:
        jax.config.update("jax_num_cpu_devices", devices or default_cpu_devices())
    except RuntimeError:  # JAX already runs in this process (main() called from Python)
        pass


def check_process_flags(args) -> None:
    """The several-process flags, checked before anything is written or configured: they go
    together, the index is in range, ``--coordinator`` is ``auto`` or ``HOST:PORT``, and a
    shared ``--out`` is given."""
    from lstmjax.experiment import hosts
    from lstmjax.experiment.config import ConfigError

    if args.coordinator != "auto":
        missing = [f for f, v in (("--coordinator", args.coordinator),
                                  ("--num-processes", args.num_processes),
                                  ("--process-id", args.process_id)) if v is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: several processes need --coordinator, "
                              "--num-processes and --process-id together")
        if not 0 <= args.process_id < args.num_processes:
            raise ConfigError(f"--process-id: {args.process_id} is not in "
                              f"0..{args.num_processes - 1}")
        hosts.parse_coordinator(args.coordinator)
    if not args.out:
        raise ConfigError("--out: several processes write into one shared run directory; "
                          "give it with --out")


def join_processes(args) -> None:
    """Program entry: join a ``jax.distributed`` job (CPU collectives through gloo), within
    ``--startup-timeout``, then watch the other processes (``--peer-timeout``; see
    :mod:`lstmjax.experiment.hosts`). ``--coordinator auto``: the coordinator, process count
    and index from the cluster environment, as JAX detects it (SLURM, Open MPI, Kubernetes,
    Cloud TPU, or ``JAX_COORDINATOR_ADDRESS``); explicit ``--num-processes``/``--process-id``
    still win."""
    import jax

    from lstmjax.experiment import hosts
    from lstmjax.experiment.config import ConfigError

    check_process_flags(args)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    auto = args.coordinator == "auto"
    try:
        hosts.join(None if auto else args.coordinator, args.num_processes, args.process_id,
                   startup_timeout=args.startup_timeout, peer_timeout=args.peer_timeout)
    except ConfigError:
        raise
    except ValueError as e:  # auto, nothing detected: JAX names the missing parameter
        raise ConfigError(
            f"--coordinator auto: no cluster environment found ({e}); JAX detects SLURM, "
            "Open MPI, Kubernetes and Cloud TPU jobs (or set JAX_COORDINATOR_ADDRESS), "
            "else give --coordinator HOST:PORT --num-processes P --process-id I") from None


def _one_line(message: str) -> str:
    """Control characters a user typed (a newline in a key, a stray carriage return) shown as
    escapes, so an error is always one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


# ``--malloc auto``: above this memory estimate per trial (lstmjax.experiment.resources) glibc
# keeps its defaults. Measured (benchmarks/RESULTS.md, long sequences): with the tuned heap
# an LSTM step at T = 100k (XLA temp 1.2 GB) peaked at 2.7-3.9 GB resident, 1.5 GB with
# glibc's defaults, at equal speed; below ~100 MB the tuning saves a page fault per 4 KiB
# touched per step, which costs more than small steps' compute.
KEEP_FREED_LIMIT = 256 * 2**20


def _run(args) -> int:
    from lstmjax import experiment
    from lstmjax._allocator import keep_freed_memory
    from lstmjax.experiment.config import load_experiment
    from lstmjax.experiment.resources import largest_trial_bytes, needs_x64

    several = args.coordinator or args.num_processes or args.process_id is not None
    if several:
        check_process_flags(args)  # before any process-global setting
    tune_xla()  # before anything touches a JAX backend
    split_cpu(args.devices)
    if several and not args.dry_run:
        join_processes(args)

    # the sweep is expanded once, while the config is validated; the trials are passed along
    cfg, trials = load_experiment(args.config, overrides=args.overrides, imports=args.imports)
    if args.dry_run:
        return _dry_run(args, cfg, trials)
    # this process only, before any array exists: reuse pages across steps (_allocator.py)
    if args.malloc == "tuned" or (args.malloc == "auto"
                                  and largest_trial_bytes(cfg, trials) <= KEEP_FREED_LIMIT):
        keep_freed_memory()
    if needs_x64(cfg, trials):
        import jax

        jax.config.update("jax_enable_x64", True)  # program entry: before any array exists
    result = experiment.run(
        cfg, out_dir=args.out, resume=args.resume, progress=args.progress, report=True,
        force_unlock=args.force_unlock, devices=args.devices, raise_failures=False,
        compile_cache=args.compile_cache, trials=trials,
    )
    if result["process"] != 0:  # another process of several: process 0 reports
        print(f"process {result['process']}: trained {len(result['trials'])} trial(s); "
              f"process 0 writes the report into {result['run_dir']}")
        return 1 if result["failed"] else 0
    rep = result["report"]
    print()
    if "frontier_table" in rep:
        print(rep["frontier_table"])
    print(rep["table"])
    print(rep["finding"])
    for row in rep.get("leaderboard", [])[:5]:  # a random or optuna search: its top trials
        pruned = " (pruned)" if row["status"] == "pruned" else ""
        print(f"#{row['rank']} {row['trial']}: {row['objective']} {row['value']:.4g}{pruned}")
    if result.get("best"):  # sweep.method: optuna
        b = result["best"]
        print(f"best trial ({b['direction']} {b['objective']}): {b['trial']} = {b['value']:.4g}")
    print()
    comp = result["compile"]
    print(f"run directory: {result['run_dir']}  ({result['wall_time_s']:.1f} s; compiled "
          f"{comp['programs']} program(s), {comp['seconds']:.1f} s in compile requests)")
    print(f"report: {rep['report']}")
    print(f"results: {rep['results']}")
    for path in rep["plots"]:
        print(f"plot: {path}")
    # compile: seconds in compile requests, summed over threads (cache loads included; ahead
    # of time it overlaps training); train: wall time while at least one trial trained
    print(f"compile {comp['seconds']:.0f} s, train {result['train_s']:.0f} s")
    if result["failed"]:
        for f in result["failed"]:
            print(f"error: trial {f['trial']} failed: {_one_line(f['error'])}", file=sys.stderr)
        print(f"error: {len(result['failed'])} trial(s) failed, the others finished; retry them "
              "with `lstmjax run CONFIG --resume`", file=sys.stderr)
        return 1
    return 0


def _dry_run(args, cfg, trials) -> int:
    """``lstmjax run CONFIG --dry-run``: :func:`lstmjax.experiment.dry_run`, printed. No
    compilation cache, no run directory, no lock: nothing is written."""
    from lstmjax.experiment.dryrun import dry_run, format_dry_run
    from lstmjax.experiment.resources import needs_x64

    if needs_x64(cfg, trials):  # as the run does at program entry (checked with its dtypes)
        import jax

        jax.config.update("jax_enable_x64", True)
    plan = dry_run(cfg, out_dir=args.out, resume=args.resume, devices=args.devices,
                   force_unlock=args.force_unlock, trials=trials)
    sys.stdout.write(format_dry_run(plan))
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
    done = diagnose_run(args.run_dir, progress="auto")  # a line per trial
    for message in done["skipped"]:
        print(f"warning: skipped {message}", file=sys.stderr)
    rep = experiment.write_report(args.run_dir)
    print(f"diagnosed {len(done['trials'])} trial(s); report: {rep['report']}")
    for probe in done["boundary"]:  # where the report's why-section and why-plots look
        print(f"boundary: {probe}")
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


def _config(args) -> int:
    from lstmjax.experiment.reference import reference

    sys.stdout.write(reference())
    return 0


_COMMANDS = {"run": _run, "report": _report, "diagnose": _diagnose, "list": _list,
             "config": _config, "bench": _bench}
