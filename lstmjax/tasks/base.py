"""The task protocol shared by every long-gap task.

A task is a frozen dataclass of static hyperparameters (hashable, so it can be a
static argument to ``jax.jit``) whose methods are pure functions:

* ``sample(key, batch_size) -> Batch`` draws a fresh batch on device;
* ``sample_eval(key, batch_size) -> Batch`` draws an evaluation batch (the same as
  ``sample`` unless the task has a held-out test split, e.g. ``digits``);
* ``loss(outputs, batch)`` is the training loss;
* ``evaluate(outputs, batch)`` returns metrics including the paper's ``solved``;
* ``dependency_lags(batch)`` says, per sequence, how far back the information its scored
  outputs need lies (the gap a cell has to bridge);
* optionally (``traced_length = True``) ``sample_at(key, batch_size, length)`` draws the batch
  of gap ``length``, a traced int up to ``self.length``, into ``self.seq_len``-step buffers,
  bit for bit the draw of the task built at that length (:func:`uniform_rows`).

Shapes (``B`` batch, ``T = task.seq_len``, ``D = task.input_size``,
``C = task.output_size``)::

    inputs_BTD   float32  right-padded with zero vectors past each length
    targets      float32 [B, T, C] ("mse" tasks) or int32 [B, T] class ids ("xent")
    mask_BT      float32  1 where the loss applies
    lengths_B    int32    true length of each sequence (== T for fixed-length tasks)

Loss normalisation (both loss types): the sum of the per-position loss over masked
positions divided by the number of masked positions in the batch, i.e. the mean over
masked positions (for ``mse`` also averaged over the ``C`` output features).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class MissingExtraError(ImportError, ValueError):
    """A task needs an optional dependency that is not installed (a ValueError too, so
    config validation reports it like any bad task parameter)."""


def require_extra(task: str, module: str, package: str, extra: str = "data") -> None:
    """Raise a one-line MissingExtraError unless ``module`` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{task}: needs the optional dependency {package!r}; "
            f"install it with: pip install 'lstmjax[{extra}]'"
        )


def entropy(p, axis=-1):
    """Entropy in nats of the distribution(s) ``p`` along ``axis`` (NumPy; 0 ln 0 = 0)."""
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


class Batch(NamedTuple):
    """One sampled batch; see the module docstring for shapes and dtypes."""

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array
    lengths: jax.Array


def check_int(task: str, name: str, value, minimum: int, why: str = "") -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise a one-line ValueError."""
    reason = f" ({why})" if why else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{task}: {name}={value!r} must be an integer; valid range: {name} >= {minimum}{reason}"
        )
    if value < minimum:
        raise ValueError(
            f"{task}: {name}={value!r} is out of range; valid range: {name} >= {minimum}{reason}"
        )
    return int(value)


def check_float(task: str, name: str, value, low: float, high: float, closed_high: bool) -> float:
    """Return ``value`` if it is a real number in ``(low, high)`` (or ``(low, high]``)."""
    bracket = "]" if closed_high else ")"
    valid = f"{low} < {name} {'<=' if closed_high else '<'} {high}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{task}: {name}={value!r} must be a number in ({low}, {high}{bracket}")
    ok = value > low and (value <= high if closed_high else value < high)
    if not ok or math.isnan(value):
        raise ValueError(f"{task}: {name}={value!r} is out of range; valid range: {valid}")
    return float(value)


def check_choice(task: str, name: str, value, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line ValueError."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{task}: {name}={value!r} is invalid; valid values: {valid}")
    return value


def last_scored_step(mask_BT):
    """Int32 [B]: the index of each sequence's last step with ``mask > 0`` (-1 if none)."""
    t_T = jnp.arange(mask_BT.shape[1], dtype=jnp.int32)
    return jnp.max(jnp.where(mask_BT > 0, t_T, -1), axis=1).astype(jnp.int32)


def first_step(flag_BT):
    """Int32 [B]: the index of each sequence's first step where ``flag`` holds (T if none)."""
    T = flag_BT.shape[1]
    return jnp.min(jnp.where(flag_BT, jnp.arange(T, dtype=jnp.int32), T), axis=1).astype(
        jnp.int32)


def at_last_step(x_BT, lengths_B):
    """``x[b, lengths[b] - 1]`` for every b; ``x`` has shape [B, T, ...]."""
    idx = (lengths_B - 1).reshape((-1,) + (1,) * (x_BT.ndim - 1))
    return jnp.take_along_axis(x_BT, idx, axis=1)[:, 0]


def traced_lengths_supported() -> bool:
    """Whether :func:`uniform_rows` reproduces ``jax.random.uniform`` here: JAX's default
    PRNG is threefry with ``jax_threefry_partitionable`` on (JAX's default), whose bits are a
    function of the flat element index."""
    return (bool(jax.config.jax_threefry_partitionable)
            and str(jax.config.jax_default_prng_impl) == "threefry2x32")


def uniform_rows(key, batch_size: int, row_len, width: int, minval=0.0, maxval=1.0):
    """Float32 ``[batch_size, width]``: for ``t < row_len`` element ``[b, t]`` is bit for bit
    ``jax.random.uniform(key, (batch_size, row_len), jnp.float32, minval, maxval)[b, t]``,
    with ``row_len`` a traced int (``<= width``); entries at ``t >= row_len`` are other
    draws of the same stream (mask them). Requires :func:`traced_lengths_supported`.

    Threefry's (partitionable) bits of element ``i`` of the flat array are
    ``threefry2x32(key, (0, i))``, xor'd halves; the row-major flat index of ``[b, t]`` in a
    ``[batch_size, row_len]`` array is ``b * row_len + t``."""
    from jax.extend.random import threefry2x32_p

    if batch_size * width >= 2**32:
        raise ValueError(f"uniform_rows: batch_size*width={batch_size * width} >= 2**32")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    b_B1 = jnp.arange(batch_size, dtype=jnp.uint32)[:, None]
    t_1T = jnp.arange(width, dtype=jnp.uint32)[None, :]
    lo = b_B1 * jnp.asarray(row_len).astype(jnp.uint32) + t_1T
    bits1, bits2 = threefry2x32_p.bind(key[0], key[1], jnp.zeros_like(lo), lo)
    bits = bits1 ^ bits2  # as jax.random.uniform for float32 (23 mantissa bits)
    one = np.array(1.0, np.float32).view(np.uint32)
    floats = jax.lax.bitcast_convert_type(
        jax.lax.shift_right_logical(bits, jnp.uint32(32 - 23)) | jnp.uint32(one), jnp.float32
    ) - jnp.float32(1.0)
    minval, maxval = jnp.float32(minval), jnp.float32(maxval)
    return jax.lax.max(minval, floats * (maxval - minval) + minval)


class Task:
    """Base class: shared sampling checks, losses and metrics.

    Subclasses are ``@dataclass(frozen=True)`` with a ``length`` field (the gap
    parameter, named the same for every task) and a ``solved_threshold`` field,
    and define ``name``, ``loss_type``, ``source``, ``input_size``, ``output_size``,
    ``seq_len``, ``chance_loss``, ``_sample`` and ``correct``.
    """

    name: ClassVar[str]
    loss_type: ClassVar[str]  # "mse" or "xent"
    source: ClassVar[str]  # short citation shown by describe()
    # ``sample_at`` draws a traced length into this task's buffer (see there): one compiled
    # training program then serves every length up to ``self.length``
    traced_length: ClassVar[bool] = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for out-of-range parameters (called on construction).
        Subclasses check their own parameters and call this for ``solved_threshold``."""
        check_float(self.name, "solved_threshold", self.solved_threshold, 0.0, 1.0, True)

    # -- sampling ---------------------------------------------------------------------
    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """Draw a batch of ``batch_size`` (a static Python int) sequences from ``key``."""
        return self._sample(key, self._checked_batch_size(batch_size))

    def _checked_batch_size(self, batch_size) -> int:
        if isinstance(batch_size, jax.core.Tracer):
            raise ValueError(
                f"{self.name}: batch_size must be a static Python int, got a traced value; "
                "mark it static (jax.jit(task.sample, static_argnums=1))"
            )
        return check_int(self.name, "batch_size", batch_size, 1)

    def sample_eval(self, key: jax.Array, batch_size: int) -> Batch:
        """An evaluation batch: ``sample`` unless the task has a held-out test split."""
        return self.sample(key, batch_size)

    def _sample(self, key: jax.Array, batch_size: int) -> Batch:
        raise NotImplementedError

    def sample_at(self, key: jax.Array, batch_size: int, length) -> Batch:
        """The batch ``dataclasses.replace(self, length=length).sample(key, batch_size)``, for a
        *traced* int ``length`` in ``[minimum, self.length]``, right-padded to ``self.seq_len``
        (padding: zero inputs, targets and mask; ``lengths`` as drawn). Its valid region is bit
        for bit the static draw's: the draws are a function of ``(key, length)`` only, not of
        the buffer. Only where ``traced_length`` (and :func:`traced_lengths_supported`); the
        caller keeps ``length`` in range (it is not checked under ``jit``)."""
        if not self.traced_length:
            raise NotImplementedError(f"{self.name}: sampling at a traced length is not "
                                      "supported; build the task at each length")
        return self._sample_at(key, self._checked_batch_size(batch_size), length)

    def sample_eval_at(self, key: jax.Array, batch_size: int, length) -> Batch:
        """``sample_eval`` at a traced ``length`` (as :meth:`sample_at`)."""
        return self.sample_at(key, batch_size, length)

    def _sample_at(self, key: jax.Array, batch_size: int, length) -> Batch:
        raise NotImplementedError

    # -- losses and metrics -----------------------------------------------------------
    def _check_outputs(self, outputs, batch: Batch) -> None:
        want = (batch.mask.shape[-2], self.seq_len, self.output_size)
        if outputs.shape[-3:] != want or outputs.ndim != 3:
            raise ValueError(
                f"{self.name}: outputs have shape {tuple(outputs.shape)}; expected "
                f"[batch, seq_len, output_size] = {list(want)}"
            )

    def position_loss(self, outputs, batch: Batch):
        """Unmasked per-position loss [B, T]: squared error (mean over C) or cross-entropy."""
        self._check_outputs(outputs, batch)
        outputs = outputs.astype(jnp.float32)
        if self.loss_type == "mse":
            return jnp.mean((outputs - batch.targets) ** 2, axis=-1)
        logp = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.take_along_axis(logp, batch.targets[..., None], axis=-1)[..., 0]

    def loss(self, outputs, batch: Batch):
        """Mean of the per-position loss over the masked positions of the batch."""
        per_pos = self.position_loss(outputs, batch)
        return jnp.sum(per_pos * batch.mask) / jnp.maximum(jnp.sum(batch.mask), 1.0)

    def correct(self, outputs, batch: Batch):
        """Bool [B]: whether each sequence is processed correctly (the paper's criterion)."""
        raise NotImplementedError

    def accuracy(self, outputs, batch: Batch):
        """The paper's accuracy; default: the fraction of sequences ``correct``."""
        return jnp.mean(self.correct(outputs, batch).astype(jnp.float32))

    def is_solved(self, loss, accuracy):
        """Default: solved when the fraction of correct sequences >= ``solved_threshold``."""
        return accuracy >= self.solved_threshold

    def extra_metrics(self, outputs, batch: Batch) -> dict:
        return {}

    def dependency_lags(self, batch: Batch):
        """Int32 [B]: per sequence, how far back the information its scored outputs need
        lies -- the largest ``t_out - t_in`` over the scored steps ``t_out`` and the input
        step ``t_in`` holding what that output must use (a marked value, a symbol to recall,
        a cue). The gap a cell has to bridge, measured in steps; diagnostics read the
        gradient gain and the gates' memory time-scales at this lag.

        This default is for answers that depend on the whole input (parity, a classified
        image, a ListOps tree): from the first step to the last scored step. Tasks whose
        answer needs particular earlier steps override it. Pure jnp (jit- and vmap-able).
        """
        return last_scored_step(batch.mask)

    def evaluate(self, outputs, batch: Batch) -> dict:
        """Metrics on one batch (pure jnp; jit- and vmap-able).

        ``loss`` (as ``self.loss``), ``loss_vs_chance`` (loss / chance_loss),
        ``accuracy`` (``self.accuracy``: by default the fraction of sequences correct per
        the paper's criterion; some tasks use the paper's token accuracy) and
        ``solved`` (bool scalar; see the task's docstring), plus task-specific extras.
        """
        loss = self.loss(outputs, batch)
        accuracy = self.accuracy(outputs, batch)
        metrics = {
            "loss": loss,
            "loss_vs_chance": loss / jnp.float32(self.chance_loss),
            "accuracy": accuracy,
            "solved": jnp.asarray(self.is_solved(loss, accuracy), dtype=bool),
        }
        metrics.update(self.extra_metrics(outputs, batch))
        return metrics


def argmax_correct(outputs, batch: Batch):
    """Bool [B, T]: the argmax of the logits is the target class id, at every step."""
    return jnp.argmax(outputs, axis=-1) == batch.targets


def all_masked(ok_BT, mask_BT):
    """Bool [B]: ``ok`` holds at every masked position of each sequence."""
    return jnp.all(ok_BT | (mask_BT == 0), axis=1)


def final_unit_errors_below(outputs, batch: Batch, tolerance: float):
    """Bool [B]: at the last valid step every softmax output is within ``tolerance``
    of the one-hot target (the 1997 paper's "final absolute error of all output units")."""
    probs = jax.nn.softmax(at_last_step(outputs, batch.lengths).astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(at_last_step(batch.targets, batch.lengths), probs.shape[-1])
    return jnp.max(jnp.abs(probs - onehot), axis=-1) < tolerance
