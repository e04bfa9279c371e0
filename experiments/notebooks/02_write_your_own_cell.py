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
# # Write your own cell
#
# **The question.** Which parts of a gated cell does bridging a long gap actually need? An
# LSTM carries its memory in $c_t = f_t \odot c_{t-1} + i_t \odot g_t$; the gradient along that
# path is multiplied by $f_t$ at every step, so an open forget gate ($f \approx 1$) lets it
# cross the gap, while a tanh RNN multiplies by $\mathrm{diag}(1-h_t^2)\,W_h^\top$ and loses
# it. Greff et al. (2017) found the forget gate and the output activation to be the LSTM's
# critical parts; van der Westhuizen & Lasenby (2018) went further and kept *only* the forget
# gate (JANET):
#
# $$ f = \sigma(z_f), \qquad c' = f \odot c + \bigl(1 - \sigma(z_f - \beta)\bigr) \odot
#    \tanh(z_g), \qquad h' = c', $$
#
# with $z = x W_x + b + h W_h$ split into the blocks $(f, g)$, and a shift $\beta$ (1 in the
# paper) so the input is let in a little less than the memory is kept. Its carry is $c$
# alone, and its fused projection has two blocks (one gate and the candidate) instead of the
# LSTM's four. (The paper also initialises $b_f$ with chrono initialisation; here it is a
# constant `forget_bias`.)
#
# Below we write it as an lstmjax cell (about 20 lines), register it so configs can name it,
# look at its gradient flow and gates with `lj.diagnostics`, and train it against `lstm` and
# `gru` on the adding problem with the experiment API. (The coupled LSTM with $f = 1 - i$
# needs no new code: it is `lj.cells.make("cifg", H)`, or the option `coupled=True`.)

# %%
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import lstmjax as lj

t_start = time.perf_counter()

# %% [markdown]
# ## 1. The cell
#
# A cell subclasses `lj.cells.Cell`: a frozen dataclass whose fields are its hyperparameters
# (`hidden_size`, `dtype`, the init names, ... are inherited; `forget_bias` and `beta` are
# ours). It says how wide its fused input projection is (`num_gates` blocks of `H`), builds
# its params in `init`, and maps a projected input `xp = x @ W_x + b` to `(carry, y)` in
# `recur`. The inherited `project`, `step` and `initial_carry` (zeros of width `H`), and the
# scan engine, work unchanged. `gate_activations` and `keep_gate` are what `lj.diagnostics`
# reads. A new cell runs the generic loop (`lax.scan` over `recur`, plain autodiff); the
# built-in families replace it with a faster loop of the same results.

# %%
@dataclasses.dataclass(frozen=True)
class JANETCell(lj.cells.Cell):
    """Forget-gate-only LSTM (JANET, van der Westhuizen & Lasenby 2018); blocks (f, g):
    f = sigmoid(z_f), c' = f * c + (1 - sigmoid(z_f - beta)) * tanh(z_g), h' = c'."""

    forget_bias: float = 1.0
    beta: float = 1.0

    @property
    def num_gates(self):
        return 2

    def init(self, key, input_size):
        H = self.hidden_size
        k_x, k_h, k_b = jax.random.split(key, 3)
        w = lambda k, shape: lj.init.torch_uniform(k, shape, hidden_size=H)
        b = w(k_b, (2 * H,)).at[:H].set(self.forget_bias)  # b_f, then b_g
        return {"W_x": w(k_x, (input_size, 2 * H)), "W_h": w(k_h, (H, 2 * H)), "b": b}

    def gate_activations(self, params, c, xp):
        z_f = (xp + c @ params["W_h"])[..., : self.hidden_size]
        return {"f": jax.nn.sigmoid(z_f)}

    def recur(self, params, c, xp):
        z = xp + c @ params["W_h"]
        z_f, z_g = z[..., : self.hidden_size], z[..., self.hidden_size :]
        c_new = jax.nn.sigmoid(z_f) * c + (1 - jax.nn.sigmoid(z_f - self.beta)) * jnp.tanh(z_g)
        return c_new, c_new

    keep_gate = "f"  # the gate that multiplies the old state (for the memory time-scale)


# %% [markdown]
# Registering gives it a name that `lj.cells.make` and the experiment API accept in this
# process. The registry refuses a name twice, so re-running this cell is guarded (to change
# the class, restart the kernel). YAML configs and the CLI, which run in a new process, find
# a cell through the module that registers it -- see the end of this section.

# %%
if "janet" not in lj.cells.names():
    lj.cells.register("janet", JANETCell, "JANET: forget-gate-only LSTM, h' = c'")

janet = lj.cells.make("janet", hidden_size=16, forget_bias=1.0)
print(lj.cells.option_names("janet"))
params = janet.init(jax.random.key(0), 2)
print(jax.tree.map(jnp.shape, params))

xs_BTD = jax.random.normal(jax.random.key(1), (4, 30, 2))
ys_BTH, c_BH = lj.scan(janet, params, xs_BTD)
print("ys", ys_BTH.shape, "final carry", c_BH.shape)

# The scan agrees with the equations written out by hand, one step at a time.
c = jnp.zeros((4, 16))
for t in range(30):
    z = xs_BTD[:, t] @ params["W_x"] + params["b"] + c @ params["W_h"]
    f, i = jax.nn.sigmoid(z[:, :16]), 1 - jax.nn.sigmoid(z[:, :16] - 1.0)
    c = f * c + i * jnp.tanh(z[:, 16:])
print("scan == equations:", np.allclose(c, c_BH, atol=1e-5))

# It trains like any other cell: gradients flow through lj.scan.
grads = jax.grad(lambda p: jnp.sum(lj.scan(janet, p, xs_BTD)[0][:, -1]))(params)
print({k: float(jnp.linalg.norm(v)) for k, v in grads.items()})

# %% [markdown]
# **From YAML and the CLI.** A new process knows only the built-in cells, so put the class and
# its `register` call in a module of yours and name the module in the config's `imports:` (or
# `lstmjax run CONFIG --import MODULE`): it is imported before the config is validated, and
# the run records it, so `--resume`, `lstmjax report`, `lstmjax diagnose` and
# `lj.experiment.load_results` import it again. A package can instead declare its cells once
# for every config, as an entry point in its `pyproject.toml`:
# `[project.entry-points."lstmjax.cells"]` with `janet = "my_package.cells"`. Here, a
# module that registers a forget-gate-peephole LSTM, and a YAML config that uses it:

# %%
module_dir = Path(tempfile.mkdtemp())
(module_dir / "my_cells.py").write_text(
    "import lstmjax as lj\n"
    "lj.cells.register('peep_f', lj.cells.LSTMCell, 'LSTM, peephole on f', peepholes=('f',))\n"
)
(module_dir / "own.yaml").write_text(
    "imports: [my_cells]\n"
    "task: {name: adding, length: 40}\n"
    "model: {cell: peep_f, hidden_size: 16}\n"
)
sys.path.insert(0, str(module_dir))  # in a shell: PYTHONPATH=DIR lstmjax run DIR/own.yaml
yaml_cfg = lj.experiment.load_config(module_dir / "own.yaml")
print(yaml_cfg.imports, yaml_cfg.model.cell, lj.cells.make("peep_f", 4).peepholes)

# %% [markdown]
# ## 2. Why it can bridge a gap: gradient flow and gates
#
# `lj.diagnostics.gradient_flow` measures how much a perturbation of the carry $k$ steps back
# still reaches the last carry: $\log_{10}$ of the gain of $\partial s_T / \partial s_{T-k}$
# against the lag $k$ (computed without underflow, so $10^{-40}$ is reported as $-40$).
# `gate_stats` gives each gate's mean and saturation, and the keep gate's memory time-scale
# $\tau = -1/\ln f$ (a value kept by $f$ decays to $1/e$ in $\tau$ steps).
#
# Here the cells are freshly initialised (no training) on 200-step inputs of the adding task.
# A larger forget bias opens the forget gate wider from the start; the gain should then decay
# more slowly with the lag.

# %%
task = lj.tasks.make("adding", length=200)
xs = task.sample(jax.random.key(2), 16).inputs  # [16, 200, 2]

candidates = {
    "rnn": lj.cells.make("rnn", 16),
    "lstm (forget_bias=1)": lj.cells.make("lstm", 16, forget_bias=1.0),
    "gru": lj.cells.make("gru", 16),
    "janet (forget_bias=1)": lj.cells.make("janet", 16, forget_bias=1.0),
    "janet (forget_bias=3)": lj.cells.make("janet", 16, forget_bias=3.0),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, cell in candidates.items():
    p = cell.init(jax.random.key(0), task.input_size)
    g = lj.diagnostics.gradient_flow(cell, p, xs)
    s = lj.diagnostics.gate_stats(cell, p, xs)
    ax.plot(g.lag, g.log10_gain, label=label)
    tau = "-" if s.timescale is None else f"{float(s.timescale.median):6.1f}"
    gates = ", ".join(f"{k}={float(v.mean):.2f}" for k, v in s.gates.items()) or "(no gates)"
    print(f"{label:22s} log10 gain at lag 100: {float(g.log10_gain[100]):7.1f}   "
          f"median tau: {tau:>6s}   gate means: {gates}")
ax.set(xlabel="lag k (steps)", ylabel="log10 gain", title="Gradient flow at initialisation")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At initialisation every cell forgets within a few steps (a median $\tau$ of one to four
# steps at `forget_bias=1`), but the gated cells forget through a gate that training can open,
# and a larger forget bias starts them with a longer memory. The tanh RNN has no such handle:
# its gain is set by $W_h$ and the saturation of tanh. (`03_analyse_a_run` follows the same
# quantities through training.)
#
# ## 3. Against `lstm` and `gru` on a gap: the experiment API
#
# The experiment API takes a config (a dict here, a YAML file from the CLI) and writes a run
# directory. The custom cell is named like any built-in one, and `model.options` reaches the
# cells that take each option (`forget_bias`: `lstm` and `janet`, not `gru`). All seeds of a
# trial train in one compiled program; a seed stops when it meets the task's criterion
# (adding: evaluation MSE below 1% of chance).
#
# This is sized to run in about a minute on a laptop CPU (one gap, 2 seeds, 600 steps), so it
# is a smoke-sized look, not a result: with 2 seeds one failure is noise. For the question
# "which is the largest gap each cell solves", add a `frontier` block, e.g.
# `{"key": "task.length", "start": 10, "max": 640, "factor": 2, "min_solved": 0.5,
# "max_budget": 4800}`, more seeds and steps (see `configs/quickstart.yaml`): its
# `frontier.csv` then says per cell whether the frontier is `stuck` (the seeds stopped
# learning: the cell does not bridge that gap), `budget_limited` (still learning when
# `max_budget` ran out) or `not_reached`.

# %%
cfg = lj.experiment.from_dict({
    "name": "own-cell",
    "task": {"name": "adding", "length": 40},
    "model": {"cell": "lstm", "hidden_size": 16, "options": {"forget_bias": 1.0}},
    "train": {"learning_rate": 1e-2, "batch_size": 32, "steps": 600, "eval_every": 100,
              "seeds": 2},
    "sweep": {"model.cell": ["lstm", "gru", "janet"]},
    "output": {"progress": "none", "plots": False},
})
run_dir = Path(tempfile.mkdtemp()) / "own-cell"
result = lj.experiment.run(cfg, out_dir=run_dir)
print(result["report"]["finding"])
print(result["report"]["table"])  # seeds solved · median steps to solve · final loss / chance

# %% [markdown]
# The same numbers, one row per trial and seed (needs pandas, `pip install 'lstmjax[results]'`).
# `outcome` is what became of the seed: `solved`, `learning` (unsolved but its loss still
# falling when the 600 steps ran out: a budget limit, not a failure), `stuck` (flat near the
# chance loss), `plateau` (flat below it) or `diverged`.

# %%
df = lj.experiment.load_results(run_dir)
print(df[["cell", "length", "seed", "solved", "steps_to_solve", "final_loss",
          "outcome"]].to_string())
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")
