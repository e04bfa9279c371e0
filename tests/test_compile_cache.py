"""The persistent compilation cache (lstmjax.experiment.compile_cache): never touched by
``import lstmjax``; ``off`` compiles as before; a second process compiles nothing the first
compiled (counted with JAX's monitoring events, not timed). JAX's cache configuration is
process-global, so each scenario runs in a fresh subprocess without the suite's own cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmjax.experiment import compile_cache

TINY = """\
name: tiny
task: {name: adding, length: 4}
model: {cell: rnn, hidden_size: 4}
train: {batch_size: 4, steps: 10, eval_every: 10, eval_batch_size: 8, seeds: 1}
output: {progress: none, plots: false, checkpoint_every: 1000}
"""

SCRIPT = """\
import json, os, sys
from pathlib import Path
xdg = Path(os.environ["XDG_CACHE_HOME"])
import jax
import lstmjax as lj
import lstmjax.experiment
out = {"import_wrote": xdg.exists(), "jax_dir_after_import": jax.config.jax_compilation_cache_dir}
cfg = lj.experiment.load_config(sys.argv[1])
for name, setting in zip(sys.argv[2::2], sys.argv[3::2]):
    r = lj.experiment.run(cfg, out_dir=Path(sys.argv[1]).parent / name, compile_cache=setting,
                          report=False)
    out[name] = r["compile"]
print(json.dumps(out))
"""


def _python(tmp_path: Path, *runs: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE", "LSTMJAX_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "tiny.yaml"), *runs],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _metrics(run_dir: Path) -> str:
    return next(run_dir.glob("*/metrics.jsonl")).read_text()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    (tmp / "tiny.yaml").write_text(TINY)
    cache = tmp / "cache"
    off = _python(tmp, "off", "off")
    first = _python(tmp, "cold", str(cache))
    files_after_first = sorted(p.name for p in cache.rglob("*") if p.is_file())
    second = _python(tmp, "warm", str(cache))
    first.update(off=off["off"], off_import_wrote=off["import_wrote"])
    return tmp, cache, first, second, files_after_first


def test_import_lstmjax_never_configures_or_writes_the_cache(two_processes):
    _, _, first, second, _ = two_processes
    assert first["off_import_wrote"] is False
    for found in (first, second):
        assert found["import_wrote"] is False
        assert found["jax_dir_after_import"] is None


def test_compile_cache_off_compiles_as_before_and_writes_nothing(two_processes):
    tmp, _, first, _, _ = two_processes
    assert first["off"]["programs"] > 0 and first["off"]["cache"] is None
    assert not (tmp / "xdg").exists()  # nor the default directory


def test_a_second_process_compiles_nothing_the_first_compiled(two_processes):
    tmp, cache, first, second, files_after_first = two_processes
    tag = compile_cache.machine_tag()
    assert first["cold"]["cache"] == str(cache / tag) == second["warm"]["cache"]
    assert first["cold"]["programs"] > 0 and files_after_first  # compiled and stored
    assert second["warm"]["programs"] == 0
    # the cached executables are the programs the uncached run compiled: the same records
    assert _metrics(tmp / "warm") == _metrics(tmp / "off")


def test_the_cache_is_split_by_machine_and_auto_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tag = compile_cache.machine_tag()
    assert tag.split("-")[0] and len(tag.split("-")[-1]) == 12
    assert compile_cache.resolve("auto") == tmp_path / "lstmjax" / "xla" / tag
    assert compile_cache.resolve(tmp_path / "mine") == tmp_path / "mine" / tag
    assert compile_cache.resolve("OFF") is None
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve(None) is None
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve(None) == tmp_path / "env" / tag


def test_the_size_bounded_cache_s_lock_package_is_a_dependency_of_lstmjax():
    """JAX's size-bounded cache (`jax_compilation_cache_max_size`, which ``enable`` sets)
    locks its entries with `filelock`; without it every cache read fails with a warning.
    The test extra brings it through torch, so the suite alone would not notice: a clean
    `make run` (base install) did."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for d in deps}
    assert "filelock" in names


def test_programs_compile_at_xla_cpu_level_1_and_the_initialiser_at_0(monkeypatch, tmp_path):
    # the level is a per-program option; XLA_FLAGS naming it wins (this suite sets level 0)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert compile_cache.compiler_options() == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert compile_cache.compiler_options() == {"xla_backend_optimization_level": 1}
    assert compile_cache.compiler_options("once") == {"xla_backend_optimization_level": 0}
    # an experiment compiled with those options trains to the numbers of the suite's own
    # level-0 programs (an independent compile of the same math; float tolerance)
    import lstmjax as lj

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("steps: 10,", "steps: 30,"))
    cfg = lj.experiment.load_config(path)
    import jax

    seen, compile_ = [], jax.stages.Lowered.compile

    def spy(self, compiler_options=None, **kw):  # what the chunk and initialiser asked for
        seen.append(dict(compiler_options or {}))
        return compile_(self, compiler_options=compiler_options, **kw)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    runs = {}
    for name in ("level1", "level0"):
        if name == "level0":
            monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
        lj.experiment.run(cfg, out_dir=tmp_path / name, compile_cache="off", report=False)
        runs[name] = lj.experiment.read_metrics(tmp_path / name / "default" / "metrics.jsonl")
    assert {"xla_backend_optimization_level": 1} in seen  # the chunk
    assert {"xla_backend_optimization_level": 0} in seen  # the initialiser
    steps = [m["step"] for m in runs["level1"]]
    assert steps == [m["step"] for m in runs["level0"]] == [10, 20, 30]
    for a, b in zip(runs["level1"], runs["level0"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)


DEVICES_SCRIPT = """\
import json, sys
import jax
jax.config.update("jax_num_cpu_devices", 2)
import jax.numpy as jnp
from jax.sharding import SingleDeviceSharding
from lstmjax.experiment import compile_cache
if sys.argv[2] == "shared":
    compile_cache.enable(sys.argv[1])
else:  # JAX's own cache, as it keys CPU programs: per device
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
out = {}
for device in jax.devices():
    x = jax.device_put(jnp.arange(6.0), device)
    like = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=SingleDeviceSharding(device))
    with compile_cache.CompileMeter() as meter:
        exe = jax.jit(lambda v: jnp.tanh(v) * v.sum()).lower(like).compile()
    y = exe(x)
    out[str(device.id)] = {"programs": meter.compiles, "on": [d.id for d in y.devices()],
                           "y": y.tolist()}
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["shared", "per_device"])
def test_a_program_cached_for_one_cpu_device_serves_the_others(tmp_path, mode):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE", "LSTMJAX_"))}
    proc = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT, str(tmp_path / "c"), mode],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    x = np.arange(6.0, dtype=np.float32)
    for device in ("0", "1"):
        assert out[device]["on"] == [int(device)]  # loaded for the device that asked
        np.testing.assert_allclose(out[device]["y"], np.tanh(x) * x.sum(), rtol=1e-6)
    assert out["0"]["programs"] == 1
    # device 1 loads device 0's program; JAX alone keys it per device and compiles it again
    assert out["1"]["programs"] == (0 if mode == "shared" else 1)
