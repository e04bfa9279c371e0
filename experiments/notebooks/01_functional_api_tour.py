# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of the functional API
#
# **The question.** A recurrent network reads a sequence one step at a time, so whatever
# links an early input to a late target has to survive the whole gap. Training has the
# same problem in reverse: the gradient that reaches step $T-k$ from the loss at step $T$
# passes through the product of $k$ Jacobians $\partial h_t / \partial h_{t-1}$. In a tanh RNN
# each factor is $\mathrm{diag}(1 - h_t^2)\,W_h^\top$, and the product usually shrinks
# geometrically in $k$ (it can also blow up): the gradients vanish (Hochreiter 1991; Bengio et
# al. 1994). The LSTM adds a cell state edited only through gates,
# $c_t = f_t \odot c_{t-1} + i_t \odot g_t$. Along that path the factor is $\mathrm{diag}(f_t)$,
# which stays close to 1 when the forget gate stays open, so the error can travel across long
# gaps (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).
#
# This notebook walks through the pieces you use to study that: cells, `lj.scan`, `lj.RNN`
# layers, a hand-written training loop on the adding problem, and importing a PyTorch LSTM.
# It runs on a laptop CPU in about a minute.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lstmjax as lj

t_start = time.perf_counter()
print("lstmjax", lj.__version__, "| jax", jax.__version__, "|", jax.devices())

# %% [markdown]
# ## 1. Cells: pure functions over plain pytrees
#
# A cell is a frozen object of hyperparameters. Its methods are pure functions: `init` returns
# the parameters as a plain dict of arrays, `initial_carry` returns the zero state, and `step`
# maps `(params, carry, x)` to `(carry, y)`. No state is hidden inside the object.

# %%
print(lj.cells.names())

cell = lj.cells.make("lstm", hidden_size=16, forget_bias=1.0)
params = cell.init(jax.random.key(0), 3)  # input width D = 3
print(cell)
print(jax.tree.map(jnp.shape, params))  # W_x [D, 4H], W_h [H, 4H], b [4H]: gates i, f, g, o

carry = cell.initial_carry(params, (4,))  # (h, c) for a batch of 4
x_BD = jax.random.normal(jax.random.key(1), (4, 3))
carry, y_BH = cell.step(params, carry, x_BD)
print("y:", y_BH.shape, "carry:", jax.tree.map(jnp.shape, carry))

# %% [markdown]
# `step` is `recur(project(x))`: `project` is the input matmul `x @ W_x + b` for all gates at
# once, which a scan hoists out of the loop for the whole sequence; only `recur` (the `h @ W_h`
# part) runs once per time step.

# %%
carry0 = cell.initial_carry(params, (4,))
via_step = cell.step(params, carry0, x_BD)
via_parts = cell.recur(params, carry0, cell.project(params, x_BD))
print(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b)), via_step, via_parts))

# %% [markdown]
# **Options.** Variants are keyword options of a cell family; the registered names are presets
# of them. `option_names` lists what a cell takes, and a typo is an error that names the
# valid choices.

# %%
print(lj.cells.option_names("lstm"))

peephole_f = lj.cells.make("peephole", 16, peepholes=("f",))  # a peephole on the forget gate
cifg = lj.cells.make("cifg", 16)  # coupled gates, f = 1 - i
gru = lj.cells.make("gru", 16, reset_after=False)  # Cho et al. 2014 form
for c in (peephole_f, cifg, gru):
    print(f"{type(c).__name__:9s} keep gate = {c.keep_gate!r:6s}",
          sorted(c.init(jax.random.key(0), 3)))

try:
    lj.cells.make("lstm", 16, forget_bais=1.0)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 2. `lj.scan`: one cell over a sequence
#
# `lj.scan(cell, params, xs)` takes batch-first `xs [B, T, D]` and returns the outputs of every
# step `ys [B, T, H]` and the final carry. With `seq_lengths` the sequences are right-padded:
# outputs past each length are zero and the returned carry is the one after each sequence's
# last valid step. Below we check the scan against a plain Python loop over `step`.

# %%
B, T, D = 4, 12, 3
xs_BTD = jax.random.normal(jax.random.key(2), (B, T, D))
ys_BTH, (h_BH, c_BH) = lj.scan(cell, params, xs_BTD)

carry = cell.initial_carry(params, (B,))
loop_ys = []
for t in range(T):
    carry, y = cell.step(params, carry, xs_BTD[:, t])
    loop_ys.append(y)
print("scan == python loop:", np.allclose(ys_BTH, jnp.stack(loop_ys, axis=1), atol=1e-5))

lengths_B = jnp.array([12, 9, 5, 1])
ys_pad, (h_last, _) = lj.scan(cell, params, xs_BTD, seq_lengths=lengths_B)
print("zero past the length:", bool(jnp.all(ys_pad[1, 9:] == 0)))
print("carry at the last valid step:", np.allclose(h_last[1], ys_pad[1, 8], atol=1e-6))

# %% [markdown]
# ## 3. Layers: `lj.RNN`
#
# `lj.RNN` stacks layers of a cell, optionally bidirectional, with dropout between layers.
# Its params are `params[layer][direction]`, each a plain cell-params dict. Dropout needs a
# PRNG `key`; without one, `apply` evaluates (no dropout).

# %%
net = lj.RNN(cell, num_layers=2, bidirectional=True, dropout=0.1)
net_params = net.init(jax.random.key(3), input_size=D)
print(len(net_params), "layers x", len(net_params[0]), "directions")

ys_eval, carries = net.apply(net_params, xs_BTD, seq_lengths=lengths_B)
ys_train, _ = net.apply(net_params, xs_BTD, seq_lengths=lengths_B, key=jax.random.key(4))
print("outputs [B, T, 2H]:", ys_eval.shape, "| dropout changes them:",
      not np.allclose(ys_eval, ys_train))
(h_fwd, c_fwd), (h_bwd, c_bwd) = carries[-1]  # last layer: forward, backward
print("last layer carries:", h_fwd.shape, h_bwd.shape)

# %% [markdown]
# ## 4. A training loop by hand: the adding problem
#
# `lj.tasks` holds the long-gap tasks with their published success criteria. In the adding
# problem (Le et al. 2015 form) channel 0 holds random values in [0, 1], channel 1 marks two
# of them, one in each half of the sequence, and the target at the last step is their sum. The
# best guess that ignores the inputs is always 1, with mean squared error 1/6
# (`task.chance_loss`); the task counts as solved below 1% of that.
#
# The model is an LSTM and a linear readout; the loss is `task.loss`, which applies the task's
# mask (here: the last step only). Everything is a pure function, so `jax.jit` compiles one
# update step, and `optax` does the rest. A short gap (`length=20`) keeps this to seconds.

# %%
task = lj.tasks.make("adding", length=20)
batch = task.sample(jax.random.key(0), 4)
print("inputs", batch.inputs.shape, "targets", batch.targets.shape, "mask", batch.mask.shape)
print("chance loss:", task.chance_loss)

lstm = lj.cells.make("lstm", hidden_size=32, forget_bias=1.0)
k_cell, k_out = jax.random.split(jax.random.key(0))
model_params = {
    "cell": lstm.init(k_cell, task.input_size),
    "W_out": jax.random.normal(k_out, (32, task.output_size)) / jnp.sqrt(32.0),
    "b_out": jnp.zeros(task.output_size),
}


def predict(p, inputs_BTD):
    ys_BTH, _ = lj.scan(lstm, p["cell"], inputs_BTD)
    return ys_BTH @ p["W_out"] + p["b_out"]  # [B, T, 1]


def loss_fn(p, batch):
    return task.loss(predict(p, batch.inputs), batch)


optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
opt_state = optimizer.init(model_params)


@jax.jit
def update(p, opt_state, key):
    batch = task.sample(key, 32)
    loss, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss


@jax.jit
def evaluate(p, key):
    batch = task.sample(key, 256)
    return task.evaluate(predict(p, batch.inputs), batch)


losses = []
key = jax.random.key(42)
for step in range(500):
    key, k_step = jax.random.split(key)
    model_params, opt_state, loss = update(model_params, opt_state, k_step)
    losses.append(float(loss))
    if step % 100 == 99:
        m = evaluate(model_params, jax.random.key(10_000 + step))
        print(f"step {step + 1:4d}  train loss {np.mean(losses[-100:]):.4f}  "
              f"eval loss / chance {float(m['loss_vs_chance']):.3f}  solved {bool(m['solved'])}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(losses, lw=0.8, label="train loss (LSTM, H=32)")
ax.axhline(task.chance_loss, color="k", ls="--", lw=1, label="chance (always predict 1)")
ax.axhline(task.solved_threshold * task.chance_loss, color="g", ls=":", lw=1,
           label="solved (1% of chance)")
ax.set(xlabel="step", ylabel="MSE", title="Adding problem, gap 20")
ax.legend(fontsize=8)
plt.show()
assert np.mean(losses[-50:]) < 0.5 * task.chance_loss, "the loss should fall well below chance"

# %% [markdown]
# ## 5. Importing weights from PyTorch
#
# `lj.interop.from_torch` turns a `torch.nn.RNN/LSTM/GRU` (or a `*Cell`) into an lstmjax model
# and params that compute the same function, with torch's call signature:
# `model.apply(params, xs)` returns `(output, (h_n, c_n))`. Torch stores `weight_ih [4H, D]`
# and two biases; lstmjax stores `W_x = weight_ih.T` in the same gate order and one fused bias.
# (PyTorch is a test dependency of lstmjax, not a runtime one.)

# %%
import torch  # noqa: E402

torch.manual_seed(0)
torch_lstm = torch.nn.LSTM(input_size=D, hidden_size=16, num_layers=2, batch_first=True)
model, tparams = lj.interop.from_torch(torch_lstm)
print(type(model).__name__, jax.tree.map(jnp.shape, tparams[0][0]))

xs_np = np.array(xs_BTD, dtype=np.float32)  # a writable copy for torch
with torch.no_grad():
    out_t, (h_t, c_t) = torch_lstm(torch.from_numpy(xs_np))
out_j, (h_j, c_j) = model.apply(tparams, xs_np)

for name, a, b in (("output", out_j, out_t), ("h_n", h_j, h_t), ("c_n", c_j, c_t)):
    err = float(np.max(np.abs(np.asarray(a) - b.numpy())))
    print(f"{name:6s} {tuple(a.shape)}  max |jax - torch| = {err:.1e}")
    np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-5)

# %% [markdown]
# The imported params are ordinary lstmjax params of an `lj.RNN` (`model.rnn`): they can be
# trained with a loop like the one above, and `lj.interop.to_torch_state_dict` sends them back
# to torch. Here we change the weights on the JAX side, export them, and check torch agrees.

# %%
changed = jax.tree.map(lambda a: 0.5 * a, tparams)
torch_lstm.load_state_dict(lj.interop.to_torch_state_dict(model, changed))
with torch.no_grad():
    out_t, _ = torch_lstm(torch.from_numpy(xs_np))
out_j, _ = model.apply(changed, xs_np)
np.testing.assert_allclose(np.asarray(out_j), out_t.numpy(), atol=1e-5)
print("round trip ok; notebook ran in", f"{time.perf_counter() - t_start:.0f} s")
