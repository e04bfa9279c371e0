"""The contenders: one train step (forward + backward of ``mean(ys**2)`` w.r.t. all
weights) and one inference call (forward) of the same layer in each library.

Every contender gets the same ``B, T, D, H``, float32, and a loss on all T outputs.
Each library uses its natural layout: torch time-major ``[T, B, D]`` (its default),
the JAX libraries batch-major ``[B, T, D]``. JAX functions are jitted once and
called with device-resident arguments; torch uses ``torch.autograd.grad`` (no
optimizer, no ``.grad`` accumulation).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("lstm", "gru", "rnn")


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    D: int
    H: int

    def __str__(self) -> str:
        return f"{self.name} (B={self.B}, T={self.T}, D={self.D}, H={self.H})"


@dataclasses.dataclass
class Contender:
    """Blocking ``train()`` and ``infer()`` calls of one implementation."""

    name: str
    train: Callable[[], object]
    infer: Callable[[], object]


def _block(fn, *args):
    return lambda: jax.block_until_ready(fn(*args))


def _loss(ys):
    return jnp.mean(jnp.square(ys))


def _jax_contender(name, apply, params, x):
    """``apply(params, x) -> ys``: jit a train step (value_and_grad) and an inference call."""
    train = jax.jit(jax.value_and_grad(lambda p, x: _loss(apply(p, x))))
    infer = jax.jit(apply)
    return Contender(name, _block(train, params, x), _block(infer, params, x))


def gates(family: str) -> int:
    return {"lstm": 4, "gru": 3, "rnn": 1}[family]


def lstmjax_contenders(family: str, cfg: Config, x_BTD, *, reference: bool = True):
    """``lstmjax`` (fast path); optionally ``lstmjax-ref`` (the reference ``lax.scan`` loop)."""
    import lstmjax as lj

    cell = lj.cells.make(family, cfg.H)
    params = cell.init(jax.random.key(0), cfg.D)
    apply = lambda p, x: lj.scan(cell, p, x)[0]  # noqa: E731
    out = [_jax_contender("lstmjax", apply, params, x_BTD)]
    if reference:
        ref = reference_cell(cell)
        out.append(
            _jax_contender("lstmjax-ref", lambda p, x: lj.scan(ref, p, x)[0], params, x_BTD)
        )
    return out


def reference_cell(cell):
    """The same cell with no fast path: ``recur_scan`` runs the reference ``lax.scan`` loop."""
    cls = type(f"Reference{type(cell).__name__}", (type(cell),),
               {"recur_scan": type(cell).reference_recur_scan})
    fields = {f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)}
    return cls(**fields)


def flax_contenders(family: str, cfg: Config, x_BTD):
    from flax import linen as nn

    cells = {
        "lstm": [("flax LSTMCell", nn.LSTMCell), ("flax OptimizedLSTMCell", nn.OptimizedLSTMCell)],
        "gru": [("flax GRUCell", nn.GRUCell)],
        "rnn": [("flax SimpleCell", nn.SimpleCell)],
    }[family]
    out = []
    for name, cls in cells:
        model = nn.RNN(cls(features=cfg.H))
        params = model.init(jax.random.key(0), x_BTD)
        out.append(_jax_contender(name, model.apply, params, x_BTD))
    return out


def equinox_contenders(family: str, cfg: Config, x_BTD):
    """Equinox cells (unbatched) under ``lax.scan``, vmapped over the batch."""
    import equinox as eqx

    cls = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}.get(family)
    if cls is None:
        return []  # equinox has no plain tanh RNN cell
    cell = cls(cfg.D, cfg.H, key=jax.random.key(0))
    params, static = eqx.partition(cell, eqx.is_array)

    def apply(params, x_BTD):
        c = eqx.combine(params, static)
        h0 = jnp.zeros((cfg.H,), x_BTD.dtype)
        carry0 = (h0, h0) if family == "lstm" else h0

        def one(x_TD):
            def step(carry, x):
                carry = c(x, carry)
                return carry, carry[0] if family == "lstm" else carry

            return jax.lax.scan(step, carry0, x_TD)[1]

        return jax.vmap(one)(x_BTD)

    return [_jax_contender(f"equinox {cls.__name__}", apply, params, x_BTD)]


def torch_contenders(family: str, cfg: Config, x_BTD):
    """``torch.nn.LSTM/GRU/RNN`` with ``os.cpu_count()`` threads, and with 1 thread (on a
    shared machine torch's thread pool can lose badly to oversubscription; the best of
    the two is the fair anchor)."""
    import torch

    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[family]
    torch.manual_seed(0)
    module = cls(cfg.D, cfg.H)
    x = torch.tensor(np.asarray(jnp.swapaxes(x_BTD, 0, 1)))
    params = list(module.parameters())

    def train():
        ys, _ = module(x)
        loss = ys.square().mean()
        return torch.autograd.grad(loss, params)

    def infer():
        with torch.inference_mode():
            return module(x)[0]

    def with_threads(n, fn):
        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(before)

        return run

    out = []
    for n in sorted({os.cpu_count() or 1, 1}, reverse=True):
        name = f"torch nn.{cls.__name__}" + (" (1 thread)" if n == 1 else f" ({n} threads)")
        out.append(Contender(name, with_threads(n, train), with_threads(n, infer)))
    return out


def all_contenders(family: str, cfg: Config, *, reference: bool = True):
    x = jax.random.normal(jax.random.key(1), (cfg.B, cfg.T, cfg.D), jnp.float32)
    return (
        lstmjax_contenders(family, cfg, x, reference=reference)
        + torch_contenders(family, cfg, x)
        + flax_contenders(family, cfg, x)
        + equinox_contenders(family, cfg, x)
    )


def matmul_flops(family: str, cfg: Config, train: bool) -> float:
    """Matmul FLOPs of a step: ``x W_x`` and ``h W_h`` forward; backward adds ``dh W_hᵀ``,
    ``dW_h`` and ``dW_x`` (no gradient w.r.t. the data), i.e. 3x recurrent + 2x input."""
    G = gates(family)
    rec = 2.0 * cfg.T * cfg.B * cfg.H * G * cfg.H
    inp = 2.0 * cfg.T * cfg.B * cfg.D * G * cfg.H
    return 3 * rec + 2 * inp if train else rec + inp


def loop_matmul_seconds(family: str, cfg: Config, repeats: int = 7, steps: int = 200) -> float:
    """Seconds of one ``[B, H] @ [H, G*H]`` float32 matmul *inside* a ``lax.scan`` (the
    recurrent matmul of ``family``), the fastest of ``repeats`` runs of ``steps`` steps.

    XLA:CPU runs a while-loop body on one thread, so this is one core's in-loop matmul
    rate: the single-core floor of a step is ``T * t`` for inference and ``3 * T * t`` for
    training (forward ``h W_h``, backward ``dz W_hᵀ``, and ``dW_h``)."""
    from benchmarks.harness import interleaved

    G = gates(family)
    W = jax.random.normal(jax.random.key(0), (cfg.H, G * cfg.H), jnp.float32) / cfg.H**0.5
    h0 = jax.random.normal(jax.random.key(1), (cfg.B, cfg.H), jnp.float32)

    @jax.jit
    def loop(h, W):
        # carry the first H columns: nothing but the matmul (and a [B, H] copy) per step
        return jax.lax.scan(lambda h, _: ((h @ W)[:, : cfg.H], None), h, None, length=steps)[0]

    t = interleaved({"loop": _block(loop, h0, W)}, repeats=repeats, warmup=2)["loop"]
    return t.low / steps


def single_core_floor(family: str, cfg: Config, train: bool, t_matmul: float) -> float:
    """The single-core floor of a step, seconds: ``3 T t`` (train) or ``T t`` (inference),
    with ``t`` from :func:`loop_matmul_seconds`."""
    return (3 if train else 1) * cfg.T * t_matmul


def matmul_rate(n: int = 1024, repeats: int = 7) -> float:
    """FLOP/s of an ``n x n x n`` float32 matmul under ``jit``: the *fastest* of ``repeats``
    (the floor is what the machine can do; on a shared machine the median undersells it)."""
    from benchmarks.harness import interleaved

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    t = interleaved({"mm": _block(mm, a, b)}, repeats=repeats, warmup=2)["mm"]
    return 2.0 * n**3 / t.low
