"""Run one reproduction to completion and refresh its ``RESULTS.md`` (``make reproduce EXP=name``).

    python experiments/reproduce.py NAME [--devices N] [--set KEY=VALUE ...]
    python experiments/reproduce.py NAME --smoke       # a few steps, into a temporary directory

The run goes to ``runs/NAME`` with ``--resume``, so an interrupted reproduction continues where it
stopped (the wall time of every invocation is kept in ``runs/NAME/reproduce.json`` and summed).
Afterwards the generated part of ``experiments/NAME/RESULTS.md`` -- the part between the
``measured`` markers: machine, date, wall time, command and the ``lstmjax report`` tables -- is
rewritten and the plots are copied to ``experiments/NAME/plots/``. Everything outside the markers
(the paper's numbers, the verdict) is written by a person and kept as it is: re-read the verdict
after a rerun.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- measured:begin (written by experiments/reproduce.py; do not edit by hand) -->"
END = "<!-- measured:end -->"


def experiment_names() -> list[str]:
    """Every directory of ``experiments/`` that holds a ``config.yaml``."""
    return sorted(p.parent.name for p in (ROOT / "experiments").glob("*/config.yaml"))


def smoke_overrides(config_path: Path) -> list[str]:
    """``--set`` overrides that shrink an experiment to a few steps of every trial it defines
    (the sweep's lengths pinned short, the frontier a single probe), so CI sees that the config
    still loads, trains, evaluates and reports."""
    import yaml

    raw = yaml.safe_load(config_path.read_text())
    sets = ["train.steps=4", "train.eval_every=2", "train.eval_batch_size=32", "train.seeds=2"]
    if "diagnostics" in raw:
        sets.append("diagnostics.every=2")
    frontier = raw.get("frontier")
    if frontier:  # two probes per variant: start and start x factor
        start = frontier.get("start", 5)
        sets.append(f"frontier.max={int(start * frontier.get('factor', 2))}")
    elif "task.length" in (raw.get("sweep") or {}):
        sets.append(f"task.length={min(raw['sweep']['task.length'])}")
    return sets


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {model}, no GPU" if model else f"{os.cpu_count()} cores"


def run(name: str, extra: list[str], devices: int | None) -> float:
    """Train (or resume) ``runs/NAME``; returns the wall seconds of this invocation."""
    cmd = [sys.executable, "-m", "lstmjax", "run", f"experiments/{name}/config.yaml",
           "--out", f"runs/{name}", "--resume", "--progress", "plain"]
    cmd += [a for s in extra for a in ("--set", s)]
    if devices:
        cmd += ["--devices", str(devices)]
    print("+", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=ROOT)
    wall = time.time() - t0
    log = ROOT / "runs" / name / "reproduce.json"
    if log.parent.exists():
        entries = json.loads(log.read_text()) if log.exists() else []
        entries.append({"started": _dt.datetime.fromtimestamp(t0, _dt.timezone.utc).isoformat(
            timespec="seconds"), "wall_s": round(wall, 1), "exit": rc, "overrides": extra,
            "machine": machine()})
        log.write_text(json.dumps(entries, indent=1) + "\n")
    if rc != 0:
        raise SystemExit(f"reproduce: lstmjax run exited with {rc}; fix it and rerun "
                         f"(the run resumes from runs/{name})")
    return wall


def measured_block(name: str) -> str:
    run_dir = ROOT / "runs" / name
    report = (run_dir / "report.md").read_text()
    entries = json.loads((run_dir / "reproduce.json").read_text())
    total = sum(e["wall_s"] for e in entries)
    first = entries[0]["started"]
    overrides = sorted({s for e in entries for s in e["overrides"]})
    body = report.split("\n", 1)[1] if report.startswith("# ") else report
    body = re.sub(r"^## ", "### ", body, flags=re.M)
    lines = [
        BEGIN,
        "## Measured",
        "",
        f"`make reproduce EXP={name}`"
        + (f" with `--set {' --set '.join(overrides)}`" if overrides else "")
        + f": {machine()}; started {first}; wall time **{total / 60:.1f} min**"
        + (f" over {len(entries)} invocations (resumed)" if len(entries) > 1 else "")
        + " (compiles included). Tables and plots below are `lstmjax report runs/"
        + f"{name}` verbatim.",
        "",
        body.strip(),
        END,
    ]
    return "\n".join(lines) + "\n"


def refresh(name: str) -> Path:
    """Copy the plots and rewrite the measured block of ``experiments/NAME/RESULTS.md``."""
    exp = ROOT / "experiments" / name
    src = ROOT / "runs" / name / "plots"
    if src.is_dir():
        (exp / "plots").mkdir(exist_ok=True)
        for png in sorted(src.glob("*.png")):
            shutil.copy2(png, exp / "plots" / png.name)
    path = exp / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# {name}: results\n\n{BEGIN}\n{END}\n"
    block = measured_block(name)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    return path


def smoke(name: str) -> None:
    cfg = ROOT / "experiments" / name / "config.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "lstmjax", "run", str(cfg), "--out", f"{tmp}/run",
               "--progress", "none"]
        cmd += [a for s in smoke_overrides(cfg) for a in ("--set", s)]
        raise SystemExit(subprocess.call(cmd, cwd=ROOT))


def main(argv: list[str] | None = None) -> None:
    names = experiment_names()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", metavar="NAME", help="one of: " + ", ".join(names))
    p.add_argument("--smoke", action="store_true", help="a few steps in a temporary directory")
    p.add_argument("--report-only", action="store_true",
                   help="refresh RESULTS.md from the existing runs/NAME without training")
    p.add_argument("--devices", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if args.name not in names:
        p.error(f"unknown experiment {args.name!r}; choose one of: {', '.join(names)}")
    if args.smoke:
        smoke(args.name)
    if not args.report_only:
        run(args.name, args.overrides, args.devices)
    print("results:", refresh(args.name).relative_to(ROOT))


if __name__ == "__main__":
    main()
