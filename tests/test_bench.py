"""The benchmark runner's ``--quick`` smoke run (as CI runs it): every section runs and
writes its report. Times are printed, never asserted on."""

from __future__ import annotations

from benchmarks import run


def test_quick_benchmark_runs_every_section(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    # --malloc default: leave the test process's allocator alone
    assert run.main(["--quick", "--malloc", "default", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for title in ("Matmul rate", "In-loop matmul", "x 1-core floor", "lstm train", "lstm infer",
                  "Parallel-scan cells", "Compile time of a training chunk", "vmapped seeds",
                  "Precision: model.compute_dtype", "bfloat16 speedup", "Targets"):
        assert title in printed, title
    for contender in ("lstmjax", "lstmjax-ref", "torch nn.LSTM", "flax LSTMCell",
                      "flax OptimizedLSTMCell", "equinox LSTMCell", "mingru (parallel)"):
        assert contender in printed, contender
    text = out.read_text()
    assert run.MARK.format("default", "begin") in text and "versions:" in text


def test_results_file_keeps_hand_written_notes(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# notes\n\nhand-written analysis\n")
    run._write_results(path, ["first"], "tuned")
    run._write_results(path, ["second"], "tuned")
    run._write_results(path, ["other allocator"], "default")
    text = path.read_text()
    assert "hand-written analysis" in text and "second" in text and "first" not in text
    assert "other allocator" in text


def test_unknown_only_token_is_an_error(capsys):
    assert run.main(["--quick", "--only", "lsmt"]) == 2
    assert "lsmt" in capsys.readouterr().err


def test_reference_contender_does_not_take_the_fast_path():
    """The ``lstmjax-ref`` rows must time the plain ``lax.scan`` loop, not the custom VJP."""
    import jax
    import jax.numpy as jnp

    import lstmjax as lj
    from benchmarks.impls import reference_cell

    cell = lj.cells.make("lstm", 4)
    params = cell.init(jax.random.key(0), 2)
    carry = cell.initial_carry(params, (2,))
    xp = cell.project(params, jnp.ones((3, 2, 2)))

    def jaxpr(c):
        return str(jax.make_jaxpr(lambda p: c.recur_scan(p, carry, xp)[1].sum())(params))

    assert "custom_vjp" in jaxpr(cell)
    assert "custom_vjp" not in jaxpr(reference_cell(cell))


def test_single_core_floor_is_three_recurrent_matmuls_per_step_in_training():
    """Train: forward ``h W_h``, backward ``dz W_hᵀ`` and ``dW_h`` -- 3 matmuls per step;
    inference: 1. The in-loop matmul's rate is positive and below 10 TFLOP/s on any CPU."""
    from benchmarks.impls import Config, loop_matmul_seconds, single_core_floor

    cfg = Config("t", 4, 50, 2, 8)
    assert single_core_floor("lstm", cfg, True, 2e-6) == 3 * 50 * 2e-6
    assert single_core_floor("gru", cfg, False, 2e-6) == 50 * 2e-6
    t = loop_matmul_seconds("lstm", cfg, repeats=3, steps=20)
    assert 2 * 4 * 8 * 32 / t < 1e13 and t > 0


def test_compile_benchmark_quick_table_has_every_program(tmp_path, capsys):
    """``python -m benchmarks.compile --quick``: one row per program with sane counts (the
    chunk scans its steps in a while loop; only it has a per-step time). Times never asserted."""
    import jax

    from benchmarks import compile as bench

    out = tmp_path / "compile.md"
    cache_before = jax.config.jax_enable_compilation_cache
    assert bench.main(["--quick", "--out", str(out)]) == 0
    assert jax.config.jax_enable_compilation_cache == cache_before  # restored
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("| ")]
    assert lines[0] == "| " + " | ".join(bench.HEADER) + " |"
    rows = [dict(zip(bench.HEADER, (c.strip() for c in ln.strip("|").split("|")), strict=True))
            for ln in lines[1:]]
    assert [r["program"] for r in rows] == list(bench.PROGRAMS)
    for r in rows:
        assert r["cell"] == "lstm" and r["config"] == "quick"
        assert float(r["compile s"]) > 0 and float(r["run ms"]) > 0
        assert int(r["StableHLO lines"]) > 10 and int(r["HLO lines"]) > 10
        assert int(r["fusions"]) >= 1 and int(r["while loops"]) >= 0
        assert (r["ms/step"] != "") == (r["program"] == "chunk")
    chunk = rows[0]
    assert int(chunk["while loops"]) >= 1  # the scan over the chunk's optimiser steps
    assert "AVX" in out.read_text().upper() or "ISA" in out.read_text()  # the machine header


def test_hlo_counts_counts_fusion_and_while_instructions_only():
    from benchmarks.compile import hlo_counts

    text = "\n".join([
        "%fused_computation.1 (p: f32[2]) -> f32[2] {",
        "  %p = f32[2]{0} parameter(0)",
        "  ROOT %n = f32[2]{0} negate(%p), metadata={op_name=\"jit(f)/while/body\"}",
        "}",
        "ENTRY %main (a: f32[2]) -> (s32[], f32[2]) {",
        "  %f = f32[2]{0} fusion(%a), kind=kLoop, calls=%fused_computation.1",
        "  %g = (f32[2]{0}, f32[]) fusion(%f), kind=kInput, calls=%fused_computation.2",
        "  %s = f32[] fusion(%f), kind=kLoop, calls=%fused_computation.3",
        "  ROOT %w = (s32[], f32[2]{0}) while(%t), condition=%c, body=%b",
        "}",
    ])
    counts = hlo_counts(text)
    assert counts["fusions"] == 3 and counts["whiles"] == 1 and counts["lines"] == 10


def test_gpu_script_smoke_run_writes_every_section(tmp_path):
    """``LSTMJAX_GPU_SMOKE=1 benchmarks/gpu.sh OUT`` (what a lent GPU will run, on tiny
    shapes): it runs unchanged on a CPU and writes every section's block."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu.md"
    env = {**os.environ, "LSTMJAX_GPU_SMOKE": "1", "PYTHON": sys.executable,
           "PYTHONPATH": str(root)}
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), str(out)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for title in ("## Accelerator run (cpu", "SMOKE RUN", "### Compile and run time per program",
                  "| lstm | quick | chunk |", "### lstm/gru against torch", "torch nn.GRU",
                  "### Vmapped seeds", "### Quickstart wall time", "total "):
        assert title in text, title
    assert "wall, finished." in text, text[-1500:]


def test_shared_seeds_benchmark_prints_own_and_shared_rows(capsys):
    """``python -m benchmarks.shared_seeds`` at a toy size: per gap a row for the gap's own
    program and one for the shared buffer that holds it (gap 6: buffer 10 of 160, 40, 10)."""
    from benchmarks.shared_seeds import main

    assert main(["--gaps", "6", "--seeds", "2", "--steps", "100"]) == 0
    rows = [ln.split("|")[1:-1] for ln in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("6", "own"), ("6", "buffer 10")]
    for r in rows:
        solved, seeds = r[2].strip().split("/")
        assert seeds == "2" and 0 <= int(solved) <= 2
