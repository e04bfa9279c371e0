"""Temporal order problem (classification at the last step, cross-entropy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lstmjax.tasks.base import (
    Batch,
    Task,
    argmax_correct,
    at_last_step,
    check_choice,
    check_float,
    check_int,
    final_unit_errors_below,
    first_step,
    last_scored_step,
)

SYMBOLS = "EBabcdXY"  # one-hot input ids 0..7
E, B, X = 0, 1, 6
DISTRACTORS = (2, 6)  # ids of a, b, c, d: randint(2, 6)

# Published windows for the relevant symbols (1-based positions, inclusive) at length 100.
WINDOWS = {
    "6a": ((10, 20), (50, 60)),
    "6b": ((10, 20), (33, 43), (66, 76)),
}


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def scaled_windows(variant: str, length: int) -> tuple[tuple[int, int], ...]:
    """The published windows scaled by length/100 and rounded half up."""
    return tuple(
        (_round(lo * length / 100), _round(hi * length / 100)) for lo, hi in WINDOWS[variant]
    )


def _layout_fits(variant: str, length: int) -> bool:
    w = scaled_windows(variant, length)
    ordered = all(w[i][1] < w[i + 1][0] for i in range(len(w) - 1))
    return w[0][0] >= 2 and ordered and w[-1][1] <= length - 1


def min_length(variant: str) -> int:
    """Smallest ``length`` whose scaled layout fits (E first, B last, windows disjoint)."""
    return next(n for n in range(1, 1000) if _layout_fits(variant, n))


@dataclass(frozen=True)
class TemporalOrderTask(Task):
    """Temporal order problem, Hochreiter & Schmidhuber 1997, Experiment 6a/6b
    (NIPS'96 Exp. 2a/2b).

    Inputs are one-hot over the 8 symbols ``E B a b c d X Y`` (ids 0..7). A sequence of
    length n, n uniform on {L, ..., L + L//10} with L = ``length`` (100-110 at the
    published L = 100), starts with E, ends with the trigger B, and is otherwise
    uniform over {a, b, c, d}, except at the relevant positions, each X or Y with
    probability 1/2:

    * ``variant="6a"``: t1 in [10, 20], t2 in [50, 60]; 4 classes XX, XY, YX, YY
      (the paper's Q, R, S, U) = ids 0..3;
    * ``variant="6b"``: t1 in [10, 20], t2 in [33, 43], t3 in [66, 76]; 8 classes
      XXX..YYY (Q, R, S, U, V, A, B, C) = ids 0..7.

    Positions are 1-based (E is position 1) and uniform in their window; for L != 100
    every window bound is scaled by L/100 and rounded half up. Class id = the bits
    (X=0, Y=1) read in time order as a binary number. Target and loss (cross-entropy)
    at the last valid step only. Arrays are right-padded to ``seq_len = L + L//10``.

    A sequence is correct when every softmax output at its end is within ``tolerance``
    = 0.3 of the one-hot target ("final absolute error of all output units < 0.3");
    ``solved``: fraction correct >= ``solved_threshold`` (default 1.0).
    chance_loss = ln(4) (6a) or ln(8) (6b): classes are equiprobable.
    """

    name = "temporal_order"
    source = "Hochreiter & Schmidhuber 1997, Exp. 6a/6b"
    loss_type = "xent"
    input_size = 8
    length: int = 100
    variant: str = "6a"
    tolerance: float = 0.3
    solved_threshold: float = 1.0

    def validate(self):
        check_choice(self.name, "variant", self.variant, tuple(WINDOWS))
        check_int(
            self.name,
            "length",
            self.length,
            min_length(self.variant),
            f"variant {self.variant}: E, the scaled windows and B must not overlap",
        )
        check_float(self.name, "tolerance", self.tolerance, 0.0, 1.0, False)
        super().validate()

    @property
    def n_relevant(self) -> int:
        return len(WINDOWS[self.variant])

    @property
    def output_size(self) -> int:
        return 2**self.n_relevant

    @property
    def seq_len(self) -> int:
        return self.length + self.length // 10

    @property
    def chance_loss(self) -> float:
        return math.log(self.output_size)

    def _sample(self, key, batch_size):
        L, S, k = self.length, self.seq_len, self.n_relevant
        k_sym, k_int = jax.random.split(key)
        ids_BT = jax.random.randint(k_sym, (batch_size, S), *DISTRACTORS)
        # Columns: the length on [L, S], the k 1-based positions in their windows, k bits.
        windows = scaled_windows(self.variant, L)
        low = jnp.array([L] + [lo for lo, _ in windows] + [0] * k)
        high = jnp.array([S + 1] + [hi + 1 for _, hi in windows] + [2] * k)
        ints_BI = jax.random.randint(k_int, (batch_size, 1 + 2 * k), low, high)
        lengths_B, pos_BK, bits_BK = ints_BI[:, 0], ints_BI[:, 1 : 1 + k], ints_BI[:, 1 + k :]
        t_T = jnp.arange(S)
        at_BTK = t_T[None, :, None] == pos_BK[:, None, :] - 1  # 1-based -> index
        relevant_BT = jnp.sum(jnp.where(at_BTK, X + bits_BK[:, None, :], 0), axis=-1)
        ids_BT = jnp.where(jnp.any(at_BTK, axis=-1), relevant_BT, ids_BT)
        last_BT = t_T[None, :] == (lengths_B[:, None] - 1)
        ids_BT = jnp.where(t_T == 0, E, jnp.where(last_BT, B, ids_BT))
        valid_BT = t_T[None, :] < lengths_B[:, None]
        inputs = jax.nn.one_hot(jnp.where(valid_BT, ids_BT, -1), 8, dtype=jnp.float32)
        label_B = jnp.sum(bits_BK * (2 ** jnp.arange(k - 1, -1, -1)), axis=1)
        targets = jnp.where(last_BT, label_B[:, None], 0).astype(jnp.int32)
        return Batch(inputs, targets, last_BT.astype(jnp.float32), lengths_B.astype(jnp.int32))

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return final_unit_errors_below(outputs, batch, self.tolerance)

    def extra_metrics(self, outputs, batch: Batch):
        ok_B = at_last_step(argmax_correct(outputs, batch), batch.lengths)
        return {"argmax_accuracy": jnp.mean(ok_B.astype(jnp.float32))}

    def dependency_lags(self, batch: Batch):
        """From the first relevant symbol (X or Y) to the class at the last valid step."""
        relevant_BT = jnp.sum(batch.inputs[..., X : X + 2], axis=-1) > 0
        return last_scored_step(batch.mask) - first_step(relevant_BT)
