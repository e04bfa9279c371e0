"""Noise-free long-time-lag task (next-symbol prediction of the final symbol)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lstmjax.tasks.base import (
    Batch,
    Task,
    check_choice,
    check_float,
    check_int,
    final_unit_errors_below,
)


@dataclass(frozen=True)
class NoiseFreeLagTask(Task):
    """Noise-free long-time-lag task, Hochreiter & Schmidhuber 1997, Experiment 2a/2b.

    With p = ``length`` there are p + 1 symbols, one-hot: a_1..a_{p-1} = ids 0..p-2,
    x = id p-1, y = id p. Each sequence is, with probability 1/2 each,
    (y, a_1, ..., a_{p-1}, y) or (x, a_1, ..., a_{p-1}, x) (``variant="2a"``); in
    ``variant="2b"`` (no local regularities) the middle a's are i.i.d. uniform over
    {a_1, ..., a_{p-1}}. The inputs are the first p symbols; ``targets[t]`` is the
    next symbol (id of symbol t + 1), but the mask selects only the last step,
    whose target, the final x/y, lies p steps after its cue. Cross-entropy there.

    A sequence is correct when every softmax output at the last step is within
    ``tolerance`` = 0.25 of the one-hot target (the paper's "maximal absolute error of
    all output units below 0.25"); ``solved``: fraction correct >= ``solved_threshold``
    (default 1.0). chance_loss = ln 2 (x and y are equiprobable).
    """

    name = "noise_free_lag"
    source = "Hochreiter & Schmidhuber 1997, Exp. 2a/2b"
    loss_type = "xent"
    length: int = 100
    variant: str = "2a"
    tolerance: float = 0.25
    solved_threshold: float = 1.0

    def validate(self):
        check_choice(self.name, "variant", self.variant, ("2a", "2b"))
        check_int(self.name, "length", self.length, 2, "at least one a-symbol between the cues")
        check_float(self.name, "tolerance", self.tolerance, 0.0, 1.0, False)
        super().validate()

    @property
    def input_size(self) -> int:
        return self.length + 1

    output_size = input_size

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def chance_loss(self) -> float:
        return math.log(2.0)

    def _sample(self, key, batch_size):
        p = self.length
        # Column 0: the cue, x or y; columns 1..p-1: a random a_i (used in variant 2b).
        high = jnp.array([p + 1] + [p - 1] * (p - 1))
        ints_BP = jax.random.randint(key, (batch_size, p), jnp.array([p - 1] + [0] * (p - 1)), high)
        cue_B1 = ints_BP[:, :1]
        if self.variant == "2a":
            mid_BM = jnp.broadcast_to(jnp.arange(p - 1), (batch_size, p - 1))
        else:
            mid_BM = ints_BP[:, 1:]
        seq_BS = jnp.concatenate([cue_B1, mid_BM, cue_B1], axis=1)
        inputs = jax.nn.one_hot(seq_BS[:, :-1], p + 1, dtype=jnp.float32)
        targets = seq_BS[:, 1:].astype(jnp.int32)
        mask = jnp.zeros((batch_size, p), jnp.float32).at[:, -1].set(1.0)
        return Batch(inputs, targets, mask, jnp.full((batch_size,), p, jnp.int32))

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return final_unit_errors_below(outputs, batch, self.tolerance)

    def dependency_lags(self, batch: Batch):
        """The cue at step 0 is predicted at the last step p - 1: p - 1."""
        return jnp.full(batch.lengths.shape, self.length - 1, jnp.int32)
