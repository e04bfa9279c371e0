"""Adding and multiplication problems (regression at the last step, MSE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from lstmjax.tasks.base import (
    Batch,
    Task,
    at_last_step,
    check_float,
    check_int,
    first_step,
    last_scored_step,
    uniform_rows,
)


def _regression_batch(values_BT, markers_BT, target_B, lengths_B) -> Batch:
    """Pack a (value, marker) sequence with a single target at the last valid step."""
    t_T = jnp.arange(values_BT.shape[1])
    last_BT = t_T[None, :] == (lengths_B[:, None] - 1)
    inputs = jnp.stack([values_BT, markers_BT], axis=-1).astype(jnp.float32)
    targets = jnp.where(last_BT, target_B[:, None], 0.0)[..., None].astype(jnp.float32)
    return Batch(inputs, targets, last_BT.astype(jnp.float32), lengths_B.astype(jnp.int32))


class _RegressionTask(Task):
    loss_type = "mse"
    input_size = 2
    output_size = 1

    def final_error(self, outputs, batch: Batch):
        """Absolute error [B] of the prediction at the last valid step."""
        pred = at_last_step(outputs[..., 0], batch.lengths)
        return jnp.abs(pred - at_last_step(batch.targets[..., 0], batch.lengths))

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return self.final_error(outputs, batch) < self.tolerance

    def dependency_lags(self, batch: Batch):
        """From the first marked value (marker channel 1.0) to the target at the last step."""
        return last_scored_step(batch.mask) - first_step(batch.inputs[..., 1] == 1.0)


@dataclass(frozen=True)
class AddingTask(_RegressionTask):
    """Adding problem, Le, Jaitly & Hinton 2015 (arXiv:1504.00941) / Li et al. 2018
    (IndRNN, arXiv:1803.04831, Sec. 5.1), in the uRNN-code form (Arjovsky et al. 2016).

    Two input channels of length T = ``length``: channel 0 holds values U[0, 1];
    channel 1 is 0 except for two markers (1.0), one uniform in the first half
    [0, T//2) and one uniform in the second half [T//2, T). The target, at the last
    step only, is the sum of the two marked values. Loss: MSE at the last step.

    chance_loss = Var(U1 + U2) = 2/12 = 1/6 (always predict 1).
    ``accuracy`` = fraction of sequences with |error| < ``tolerance`` (0.04, borrowed
    from the 1997 criterion; the papers define none). ``solved`` (the papers define no
    threshold): MSE < ``solved_threshold`` x chance_loss, default 1% of chance.
    """

    name = "adding"
    source = "Le et al. 2015; Li et al. 2018 (IndRNN)"
    length: int = 100
    tolerance: float = 0.04
    solved_threshold: float = 0.01

    def validate(self):
        check_int(self.name, "length", self.length, 2, "one marker in each half")
        check_float(self.name, "tolerance", self.tolerance, 0.0, float("inf"), False)
        super().validate()

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def chance_loss(self) -> float:
        return 1.0 / 6.0

    traced_length = True

    def _sample(self, key, batch_size):
        return self._draw(key, batch_size, self.length)

    def _sample_at(self, key, batch_size, length):
        return self._draw(key, batch_size, jnp.asarray(length, jnp.int32))

    def _draw(self, key, batch_size, T):
        """A batch of length ``T`` (a Python int: the static draw; traced: the same draws in
        a buffer of ``self.length`` steps, zero past ``T``)."""
        W, half = self.length, T // 2
        k_val, k_pos = jax.random.split(key)
        if isinstance(T, int):
            values_BT = jax.random.uniform(k_val, (batch_size, T), jnp.float32)
        else:
            values_BT = uniform_rows(k_val, batch_size, T, W)
            values_BT = jnp.where(jnp.arange(W)[None, :] < T, values_BT, 0.0)
        # Marker positions: column 0 uniform on [0, T//2), column 1 on [T//2, T).
        pos_B2 = jax.random.randint(
            k_pos, (batch_size, 2), jnp.stack([0, half]), jnp.stack([half, T])
        )
        marked_BT = jnp.any(jnp.arange(W)[None, :, None] == pos_B2[:, None, :], axis=-1)
        target_B = jnp.sum(jnp.where(marked_BT, values_BT, 0.0), axis=1)
        lengths_B = jnp.full((batch_size,), T, jnp.int32)
        return _regression_batch(values_BT, marked_BT.astype(jnp.float32), target_B, lengths_B)

    def is_solved(self, loss, accuracy):
        return loss < self.solved_threshold * self.chance_loss


class _Marked1997(_RegressionTask):
    """Shared layout of Hochreiter & Schmidhuber 1997, Experiments 4 and 5."""

    low: ClassVar[float]  # values are U[low, high]
    high: ClassVar[float]
    first_pair_x1: ClassVar[float]  # X1 when the first pair is the one marked as X1

    def validate(self):
        check_int(
            self.name,
            "length",
            self.length,
            22,
            "the first 10 steps must lie inside the first length//2 - 1 steps",
        )
        check_float(self.name, "tolerance", self.tolerance, 0.0, float("inf"), False)
        super().validate()

    @property
    def seq_len(self) -> int:
        return self.length + self.length // 10

    def combine(self, x1_B, x2_B):
        raise NotImplementedError

    traced_length = True

    def _sample(self, key, batch_size):
        return self._draw(key, batch_size, self.length)

    def _sample_at(self, key, batch_size, length):
        return self._draw(key, batch_size, jnp.asarray(length, jnp.int32))

    def _draw(self, key, batch_size, T):
        """A batch for gap ``T`` (a Python int: the static draw; traced: the same draws in a
        buffer of ``self.seq_len`` steps)."""
        S, h = T + T // 10, T // 2 - 1
        k_int, k_val = jax.random.split(key)
        # Columns: length n on [T, S]; X1's position p1 on [0, 10); r on [0, h - 1).
        ints_B3 = jax.random.randint(
            k_int, (batch_size, 3), jnp.stack([T, 0, 0]), jnp.stack([S + 1, 10, h - 1])
        )
        lengths_B, p1_B, r_B = ints_B3[:, 0], ints_B3[:, 1], ints_B3[:, 2]
        p2_B = r_B + (r_B >= p1_B)  # uniform over the first h positions other than p1 (< 10 <= h)
        t_T = jnp.arange(self.seq_len)
        valid_BT = t_T[None, :] < lengths_B[:, None]
        if isinstance(T, int):
            values_BT = jax.random.uniform(k_val, (batch_size, S), jnp.float32, self.low,
                                           self.high)
        else:
            values_BT = uniform_rows(k_val, batch_size, S, self.seq_len, self.low, self.high)
        x1_is_first_BT = (p1_B[:, None] == 0) & (t_T[None, :] == 0)
        values_BT = jnp.where(x1_is_first_BT, self.first_pair_x1, values_BT)
        values_BT = jnp.where(valid_BT, values_BT, 0.0)
        marked_BT = (t_T == p1_B[:, None]) | (t_T == p2_B[:, None])
        ends_BT = (t_T[None, :] == 0) | (t_T[None, :] == lengths_B[:, None] - 1)
        markers_BT = jnp.where(marked_BT, 1.0, jnp.where(ends_BT, -1.0, 0.0))
        x1_B = jnp.take_along_axis(values_BT, p1_B[:, None], axis=1)[:, 0]
        x2_B = jnp.take_along_axis(values_BT, p2_B[:, None], axis=1)[:, 0]
        return _regression_batch(values_BT, markers_BT, self.combine(x1_B, x2_B), lengths_B)


@dataclass(frozen=True)
class Adding1997Task(_Marked1997):
    """Adding problem, Hochreiter & Schmidhuber 1997, Experiment 4 (NIPS'96 Exp. 1).

    Each step is a pair (value, marker). Values U[-1, 1]. The sequence length n is
    uniform on {T, ..., T + T//10} with T = ``length``; arrays are right-padded to
    ``seq_len = T + T//10`` (padding: zero inputs, mask 0). Marking: one of the first 10
    pairs is marked 1.0 (its value is X1), then one of the first T//2 - 1 still unmarked
    pairs is marked 1.0 (value X2). All other markers are 0 except the first and last
    pair, which carry -1 (a marked first pair keeps marker 1.0). If the first pair is
    the one marked as X1, X1 (and that input value) is set to 0. Target, at the last
    step only: 0.5 + (X1 + X2) / 4. A sequence is correct if the absolute error at its
    end is < ``tolerance`` = 0.04; ``solved``: fraction correct >= ``solved_threshold``
    (default 1.0, every sequence of the batch).

    chance_loss = Var(target) = (E[X1^2] + E[X2^2]) / 16 = (0.9/3 + 1/3) / 16 = 19/480
    (always predict 0.5).
    """

    name = "adding_1997"
    source = "Hochreiter & Schmidhuber 1997, Exp. 4"
    low = -1.0
    high = 1.0
    first_pair_x1 = 0.0
    length: int = 100
    tolerance: float = 0.04
    solved_threshold: float = 1.0

    @property
    def chance_loss(self) -> float:
        return 19.0 / 480.0

    def combine(self, x1_B, x2_B):
        return 0.5 + (x1_B + x2_B) / 4.0


@dataclass(frozen=True)
class MultiplicationTask(_Marked1997):
    """Multiplication problem, Hochreiter & Schmidhuber 1997, Experiment 5.

    As ``adding_1997`` (same lengths, markers and positions) except that values are
    U[0, 1], the target is X1 * X2, and when the first pair is the one marked as X1,
    X1 (and that input value) is set to 1.0 (the paper's rule for this experiment; a
    reproduction quotes it, the PDF text was not available to check). Correct if the
    absolute error at the end is < ``tolerance`` = 0.04; ``solved``: fraction correct
    >= ``solved_threshold`` (default 1.0).

    chance_loss = Var(X1 X2) with X1 = 1 w.p. 1/10 else U[0, 1] and X2 ~ U[0, 1]:
    E[(X1X2)^2] - E[X1X2]^2 = (0.4/3) - 0.275^2 = 277/4800.
    """

    name = "multiplication"
    source = "Hochreiter & Schmidhuber 1997, Exp. 5"
    low = 0.0
    high = 1.0
    first_pair_x1 = 1.0
    length: int = 100
    tolerance: float = 0.04
    solved_threshold: float = 1.0

    @property
    def chance_loss(self) -> float:
        return 277.0 / 4800.0

    def combine(self, x1_B, x2_B):
        return x1_B * x2_B
