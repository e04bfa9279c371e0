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
