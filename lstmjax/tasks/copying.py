"""Copying-memory tasks: fixed delay, variable delay, and selective copying."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lstmjax.tasks.base import Batch, Task, all_masked, argmax_correct, check_int, first_step


class _CopyBase(Task):
    """Shared by the copy tasks. Input ids: 0 = blank/noise, 1..K = symbols, K+1 = marker
    (one-hot over K+2); output classes: 0 = blank, 1..K = symbols (K+1 classes)."""

    loss_type = "xent"

    def validate(self):
        check_int(self.name, "length", self.length, 1)
        check_int(self.name, "n_symbols", self.n_symbols, 2, "alphabet of symbols to copy")
        check_int(self.name, "n_recall", self.n_recall, 1, "number of symbols to copy")
        super().validate()

    @property
    def input_size(self) -> int:
        return self.n_symbols + 2

    @property
    def output_size(self) -> int:
        return self.n_symbols + 1

    def _symbols(self, key, batch_size):
        return jax.random.randint(key, (batch_size, self.n_recall), 1, self.n_symbols + 1)

    def recall_mask(self, batch: Batch):
        """Bool [B, T]: the steps at which a symbol must be recalled."""
        raise NotImplementedError

    def correct(self, outputs, batch: Batch):
        """All recalled symbols of the sequence are the argmax of the outputs."""
        self._check_outputs(outputs, batch)
        return all_masked(argmax_correct(outputs, batch), self.recall_mask(batch))

    def extra_metrics(self, outputs, batch: Batch):
        recall = self.recall_mask(batch).astype(jnp.float32)
        ok = argmax_correct(outputs, batch).astype(jnp.float32)
        return {"symbol_accuracy": jnp.sum(ok * recall) / jnp.sum(recall)}


@dataclass(frozen=True)
class CopyTask(_CopyBase):
    """Copying memory, Arjovsky, Shah & Bengio 2016 (uRNN, arXiv:1511.06464), as in the
    authors' ``memory_problem.py``.

    With T = ``length``, K = ``n_symbols`` (8) and N = ``n_recall`` (10), each sequence
    has T + 2N steps: N symbols uniform over 1..K, T - 1 blanks (0), the marker (K+1),
    then N blanks. Targets: blank (0) for the first T + N steps, then the N symbols.
    Cross-entropy at every step; the loss is the mean over all B x (T + 2N) steps,
    exactly the paper's per-step mean.

    chance_loss = N ln K / (T + 2N) = 10 ln 8 / (T + 20): predict blanks, then a
    uniform guess at each of the N recall steps. A sequence is correct when the argmax
    at each of its N recall steps is the symbol; ``solved`` (the paper defines no
    threshold): fraction correct >= ``solved_threshold`` (default 1.0, every symbol
    of every sequence in the batch).
    """

    name = "copy"
    source = "Arjovsky et al. 2016 (uRNN)"
    length: int = 100
    n_symbols: int = 8
    n_recall: int = 10
    solved_threshold: float = 1.0

    @property
    def seq_len(self) -> int:
        return self.length + 2 * self.n_recall

    @property
    def chance_loss(self) -> float:
        return self.n_recall * math.log(self.n_symbols) / self.seq_len

    def _sample(self, key, batch_size):
        T, N, S = self.length, self.n_recall, self.seq_len
        syms_BN = self._symbols(key, batch_size)
        zeros = jnp.zeros((batch_size, S), jnp.int32)
        ids_BT = zeros.at[:, :N].set(syms_BN).at[:, T + N - 1].set(self.n_symbols + 1)
        targets = zeros.at[:, T + N :].set(syms_BN)
        inputs = jax.nn.one_hot(ids_BT, self.input_size, dtype=jnp.float32)
        mask = jnp.ones((batch_size, S), jnp.float32)
        return Batch(inputs, targets, mask, jnp.full((batch_size,), S, jnp.int32))

    def recall_mask(self, batch: Batch):
        return jnp.broadcast_to(
            jnp.arange(self.seq_len) >= self.length + self.n_recall, batch.mask.shape
        )

    def dependency_lags(self, batch: Batch):
        """Symbol i is shown at step i and recalled at step T + N + i: T + N for every
        sequence."""
        return jnp.full(batch.lengths.shape, self.length + self.n_recall, jnp.int32)


@dataclass(frozen=True)
class VariableCopyTask(_CopyBase):
    """Variable-delay copy, Henaff, Szlam & LeCun 2016 (arXiv:1602.06662), as used by
    Tallec & Ollivier 2018 (arXiv:1804.11188): the copy task in which "the number of
    characters between the end of the sequence to copy and the signal character is
    drawn at random between 1 and T".

    With T = ``length``, K = ``n_symbols``, N = ``n_recall``: N symbols uniform over
    1..K, D blanks with D uniform on {1, ..., T}, the marker (K+1), then N blank
    inputs during which the N symbols must be output. Valid length n = 2N + D + 1;
    arrays are right-padded to ``seq_len = T + 2N + 1`` (padding: zero inputs, mask
    0). Targets: blank except at the N recall steps. Cross-entropy at every valid
    step; the loss is the mean over all valid steps of the batch.

    chance_loss = N ln K / E[n] = N ln K / (2N + 1 + (T + 1)/2), the large-batch
    value of the loss of the predictor that outputs blanks and a uniform guess after
    the marker. ``correct``/``solved`` as for ``copy``.
    """

    name = "variable_copy"
    source = "Henaff et al. 2016; Tallec & Ollivier 2018"
    length: int = 100
    n_symbols: int = 8
    n_recall: int = 10
    solved_threshold: float = 1.0

    @property
    def seq_len(self) -> int:
        return self.length + 2 * self.n_recall + 1

    @property
    def chance_loss(self) -> float:
        mean_len = 2 * self.n_recall + 1 + (self.length + 1) / 2
        return self.n_recall * math.log(self.n_symbols) / mean_len

    def _sample(self, key, batch_size):
        N, S = self.n_recall, self.seq_len
        # Columns: N symbols on [1, K], then the delay D on [1, T].
        high = jnp.array([self.n_symbols + 1] * N + [self.length + 1])
        ints_BI = jax.random.randint(key, (batch_size, N + 1), 1, high)
        syms_BN, delay_B = ints_BI[:, :N], ints_BI[:, N]
        lengths_B = 2 * N + 1 + delay_B
        t_T = jnp.arange(S)
        marker_at_B = N + delay_B
        ids_BT = jnp.zeros((batch_size, S), jnp.int32).at[:, :N].set(syms_BN)
        ids_BT = jnp.where(t_T == marker_at_B[:, None], self.n_symbols + 1, ids_BT)
        valid_BT = t_T[None, :] < lengths_B[:, None]
        inputs = jax.nn.one_hot(jnp.where(valid_BT, ids_BT, -1), self.input_size, dtype=jnp.float32)
        recall_idx_BT = jnp.clip(t_T[None, :] - marker_at_B[:, None] - 1, 0, N - 1)
        recalled_BT = jnp.take_along_axis(syms_BN, recall_idx_BT, axis=1)
        recall_BT = (t_T[None, :] > marker_at_B[:, None]) & valid_BT
        targets = jnp.where(recall_BT, recalled_BT, 0).astype(jnp.int32)
        return Batch(inputs, targets, valid_BT.astype(jnp.float32), lengths_B.astype(jnp.int32))

    def recall_mask(self, batch: Batch):
        t_T = jnp.arange(self.seq_len)
        first_recall_B = batch.lengths - self.n_recall
        return (t_T[None, :] >= first_recall_B[:, None]) & (batch.mask > 0)

    def dependency_lags(self, batch: Batch):
        """Symbol i is shown at step i and recalled right after the marker: the marker's
        step + 1 = N + D + 1 (the delay D varies per sequence)."""
        marker = batch.inputs[..., self.n_symbols + 1] > 0
        return first_step(marker) + 1


@dataclass(frozen=True)
class SelectiveCopyTask(_CopyBase):
    """Selective copying, Gu & Dao 2023 (Mamba, arXiv:2312.00752), with the generator of
    the S4 repository (``copying.py``, ``variable=True``).

    With L = ``length`` (noise steps), K = ``n_symbols``, N = ``n_recall``: the N
    symbols (uniform over 1..K) are placed, in order, at N distinct positions drawn
    uniformly among the first L + N steps; every other of those steps is the noise
    token 0. Then come N marker steps (K+1), at which the N symbols must be output in
    order. ``seq_len = L + 2N``. Cross-entropy only at the N marker steps (mask).

    Defaults follow Mamba: vocabulary 16 = noise + 14 symbols + marker (the S4
    generator's A = 16), N = 16, L = 4096. chance_loss = ln K (uniform guess over
    the symbols at every recall step). A sequence is correct when all N recalled
    symbols are right (the paper reports per-token accuracy, our ``symbol_accuracy``);
    ``solved``: fraction correct >= ``solved_threshold`` (default 1.0).
    """

    name = "selective_copy"
    source = "Gu & Dao 2023 (Mamba)"
    length: int = 4096
    n_symbols: int = 14
    n_recall: int = 16
    solved_threshold: float = 1.0

    @property
    def seq_len(self) -> int:
        return self.length + 2 * self.n_recall

    @property
    def chance_loss(self) -> float:
        return math.log(self.n_symbols)

    def _sample(self, key, batch_size):
        L, N, S = self.length, self.n_recall, self.seq_len
        k_sym, k_pos = jax.random.split(key)
        syms_BN = self._symbols(k_sym, batch_size)
        noise_BP = jax.random.uniform(k_pos, (batch_size, L + N))
        pos_BN = jnp.sort(jax.lax.top_k(noise_BP, N)[1], axis=1)  # N distinct, in order
        rows_B1 = jnp.arange(batch_size)[:, None]
        ids_BT = jnp.zeros((batch_size, S), jnp.int32).at[rows_B1, pos_BN].set(syms_BN)
        ids_BT = ids_BT.at[:, L + N :].set(self.n_symbols + 1)
        inputs = jax.nn.one_hot(ids_BT, self.input_size, dtype=jnp.float32)
        targets = jnp.zeros((batch_size, S), jnp.int32).at[:, L + N :].set(syms_BN)
        mask = jnp.zeros((batch_size, S), jnp.float32).at[:, L + N :].set(1.0)
        return Batch(inputs, targets, mask, jnp.full((batch_size,), S, jnp.int32))

    def recall_mask(self, batch: Batch):
        return batch.mask > 0

    def dependency_lags(self, batch: Batch):
        """The i-th symbol (at its drawn position p_i among the first L + N steps) is
        recalled at step L + N + i: the largest L + N + i - p_i of the sequence."""
        S = self.seq_len
        t_T = jnp.arange(S, dtype=jnp.int32)
        shown_BT = (jnp.sum(batch.inputs[..., 1 : self.n_symbols + 1], axis=-1) > 0) & (
            t_T < self.length + self.n_recall)
        order_BT = jnp.cumsum(shown_BT, axis=1, dtype=jnp.int32) - 1  # i of the symbol at t
        lag_BT = self.length + self.n_recall + order_BT - t_T
        return jnp.max(jnp.where(shown_BT, lag_BT, 0), axis=1).astype(jnp.int32)
