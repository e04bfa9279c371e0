# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analyse a run
#
# **The question.** A run answers *which* cell solves which gap; its files also hold the
# evidence for *why*. A tanh RNN's gradient across a gap of $k$ steps is a product of $k$
# Jacobians $\mathrm{diag}(1-h_t^2)\,W_h^\top$, which tends to shrink geometrically, so the
# learning signal from the target never reaches the early input it depends on. An LSTM's
# cell state $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ passes the gradient through
# $\mathrm{diag}(f_t)$ instead, and training can hold the forget gate near 1. If that is the
# mechanism, the recorded gradient flow should stay high across the gap for the cells that
# solve it.
#
# This notebook makes a tiny run (a tanh RNN and an LSTM on the adding problem, a minute or
# two on a laptop CPU) into a temporary directory and reads it back: the results table, the
# solved fraction against the gap, the learning curves, and the gradient flow and gate
# statistics recorded while training. To analyse your own run, set `run_dir` to it (e.g.
# `runs/quickstart` after `make run`) and skip the cell that trains.
# `lj.experiment.load_results`, `load_metrics` and `load_diagnostics` need pandas (`pip install
# 'lstmjax[results]'`).

# %%
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lstmjax as lj

t_start = time.perf_counter()

# %% [markdown]
# ## 1. A tiny run
#
# The `frontier` block searches, per variant, the largest gap solved: gaps 10, then 40 (at most
# `max`), and a probe counts as solved when at least half of its seeds meet the task's
# criterion (adding: evaluation MSE below 1% of the chance loss). A probe left unsolved while
# enough of its seeds are still learning is trained on from its checkpoint (600, then 1200
# steps: `max_budget`) before it counts as unsolved. The grouped `variant` axis
# gives the RNN its own learning rate, as `configs/quickstart.yaml` does. `diagnostics`
# records gradient flow and gate statistics at step 0, every 300 steps and where a trial
# stops. Two seeds and 600 steps make this a smoke-sized look, not a result.

# %%
cfg = lj.experiment.from_dict({
    "name": "rnn-vs-lstm",
    "task": {"name": "adding", "length": 10},
    "model": {"cell": "lstm", "hidden_size": 16, "options": {"forget_bias": 1.0}},
    "train": {"learning_rate": 1e-2, "batch_size": 32, "steps": 600, "eval_every": 100,
              "seeds": 2},
    "sweep": {"variant": [
        {"name": "rnn", "model.cell": "rnn", "train.learning_rate": 3e-3},
        {"name": "lstm", "model.cell": "lstm"},
    ]},
    "frontier": {"key": "task.length", "start": 10, "max": 40, "factor": 4, "resolution": 3,
                 "min_solved": 0.5, "max_budget": 1200},
    "diagnostics": {"every": 300, "batch_size": 16},
    "output": {"progress": "none", "plots": False},
})
run_dir = Path(tempfile.mkdtemp()) / cfg.name
result = lj.experiment.run(cfg, out_dir=run_dir)
print(result["report"]["finding"])

# %% [markdown]
# ## 2. What a run directory holds
#
# `config.yaml` (the resolved config), `results.csv` (one row per trial and seed),
# `frontier.csv` and `report.md` at the top; per trial, `metrics.jsonl` (one line per
# evaluation and seed), `diagnostics.jsonl`, `summary.json` and `checkpoints/`.
# `lj.experiment.load_run_config` reads the config back, validated as when it ran.

# %%
for path in sorted(run_dir.iterdir()):
    inside = sorted(p.name for p in path.iterdir()) if path.is_dir() else ""
    print(f"{path.name:26s} {inside}")
print(lj.experiment.load_run_config(run_dir).frontier)

# %% [markdown]
# ## 3. Results: solved fraction against the gap
#
# `load_results` gives one row per trial and seed, with the columns of `results.csv`.
# `outcome` says what became of each seed, read from its evaluation curve
# (`lstmjax.experiment.outcome`): `solved`; `learning` (unsolved, its log loss still falling
# significantly when the budget ran out: a budget limit, not yet a failure); `stuck` (flat at
# >= 0.9x the chance loss); `plateau` (flat below that); `diverged`. `steps_trained` is the
# seed's updates (a seed stops when it solves).

# %%
df = lj.experiment.load_results(run_dir)
print(df[["variant", "length", "seed", "solved", "steps_to_solve", "steps_trained",
          "outcome"]].to_string())

solved = df.groupby(["variant", "length"])["solved"].mean().unstack("variant")
print(solved)

fig, ax = plt.subplots(figsize=(5, 3))
for variant in solved.columns:
    col = solved[variant].dropna()
    ax.plot(col.index, col.to_numpy(dtype=float), "o-", label=variant)
ax.axhline(cfg.frontier.min_solved, color="k", ls=":", lw=1, label="min_solved")
ax.set(xscale="log", xlabel="gap (task.length)", ylabel="fraction of seeds solved",
       ylim=(-0.05, 1.05), title="Adding problem")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The frontier search's verdict per variant is in `frontier.csv`: the largest gap solved and
# the smallest not solved, each empty where the search found none (nothing solved from
# `start` on; everything solved up to `max`), and `boundary`, how the frontier ends: `stuck`
# (at the smallest unsolved gap too few seeds were still learning to solve it, with the
# budget in `budget`), `budget_limited` (enough were still learning when `max_budget` ran
# out: more steps might solve it) or `not_reached` (`max` solved). The `*_ci_low/high`
# columns are the 95% Wilson intervals of the solved fractions at both ends: with 2 seeds
# they are wide, and the report's Finding says when two variants cannot be told apart.

# %%
print((run_dir / "frontier.csv").read_text())

# %% [markdown]
# ## 4. Learning curves
#
# `load_metrics` gives one row per line of every trial's `metrics.jsonl`: the step, the seed,
# the training loss and the evaluation metrics on fresh sequences. `loss_vs_chance` is the
# evaluation loss over the chance loss: 1 is no better than ignoring the input, and the
# adding problem counts as solved below 0.01. A seed stops at the first evaluation where it
# is solved.

# %%
curves = lj.experiment.load_metrics(run_dir)
print(curves.columns.tolist())

trials = sorted(curves["trial"].unique())
fig, axes = plt.subplots(1, len(trials), figsize=(4 * len(trials), 3), sharey=True)
for ax, trial in zip(np.atleast_1d(axes), trials, strict=True):
    for seed, seed_curve in curves[curves["trial"] == trial].groupby("seed"):
        ax.semilogy(seed_curve["step"], seed_curve["loss_vs_chance"], "o-", ms=3,
                    label=f"seed {seed}")
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.axhline(0.01, color="g", ls=":", lw=1)
    ax.set(title=trial, xlabel="step")
np.atleast_1d(axes)[0].set_ylabel("eval loss / chance")
np.atleast_1d(axes)[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Gradient flow and gates while training
#
# `load_diagnostics` reads every trial's `diagnostics.jsonl` (one line per recorded step and
# seed) into three tidy frames: `gradient_flow` has one row per lag $k$ with `log10_gain`, the
# log10 of the gain of $\partial s_T / \partial s_{T-k}$ on a fixed batch of the trial's task
# (as `lj.diagnostics.gradient_flow`) and `dependency_lag`, the median lag the task needs
# bridged on that batch; `gates` one row per gate with its mean and saturation; `timescales`
# the 10/25/50/75/90 % quantiles of the keep gate's memory time-scale $\tau = -1/\ln f$ in steps
# (as `lj.diagnostics.gate_stats`; no rows for the gateless RNN). Below: the gain across the
# gap at initialisation (dashed) and at the last recorded step (solid), averaged over seeds.

# %%
diag = lj.experiment.load_diagnostics(run_dir)
flow = diag.gradient_flow
print(flow.columns.tolist())

fig, ax = plt.subplots(figsize=(6, 3.5))
for k, trial in enumerate(trials):
    mine = flow[flow["trial"] == trial]
    for step, style in ((mine["step"].min(), "--"), (mine["step"].max(), "-")):
        gain = mine[mine["step"] == step].groupby("lag")["log10_gain"].mean()
        ax.plot(gain.index, gain.values, style, color=f"C{k}", label=f"{trial}, step {step}")
ax.set(xlabel="lag k (steps)", ylabel="log10 gain", title="Gradient flow across the gap")
ax.legend(fontsize=7)
plt.show()

# %%
at_longest_lag = flow.loc[flow.groupby(["trial", "step", "seed"])["lag"].idxmax()]
table = at_longest_lag.merge(diag.timescales, how="left",
                             on=["trial", "variant", "cell", "length", "seed", "step"])
gate_means = diag.gates.pivot_table(index=["trial", "step", "seed"], columns="gate",
                                    values="mean")
print(table[["trial", "step", "seed", "lag", "log10_gain", "tau_median"]]
      .join(gate_means.round(2), on=["trial", "step", "seed"]).to_string(index=False))

# %% [markdown]
# How to read it: a gain near 0 (a factor near 1) at the longest lag means a change of the
# carry at the start of the sequence still reaches its end, which is what the gradient needs
# to connect the first marker to the target. Compare the dashed and solid lines of each trial:
# where training raised the gain across the gap, and whether the trials that solved their gap
# are the ones with the flattest curves. With two seeds and 600 steps this is an illustration
# of the method; `lstmjax diagnose RUN_DIR` recomputes the same quantities from the
# checkpoints of any finished run, and `lstmjax report RUN_DIR` draws them into `plots/`.

# %%
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")
