"""In-context recall: multi-query associative recall (Zoology) and induction heads (H3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lstmjax.tasks.base import (
    Batch,
    Task,
    all_masked,
    argmax_correct,
    at_last_step,
    check_float,
    check_int,
    first_step,
    last_scored_step,
)


@dataclass(frozen=True)
class AssociativeRecallTask(Task):
    """Multi-query associative recall (MQAR), Arora, Eyuboglu et al. 2023 ("Zoology",
    arXiv:2312.04927), with the generator of HazyResearch/zoology
    (``zoology/data/multiquery_ar.py``).

    With L = ``length`` (Zoology's ``input_seq_len``, even), V = ``vocab_size``,
    N = ``n_pairs``: keys are N distinct tokens from {1, ..., V/2 - 1}, values N
    distinct tokens from {V/2, ..., V - 1} (V/2 rounded down). The first 2N steps are
    the pairs k_1 v_1 ... k_N v_N. The remaining L - 2N steps hold (L - 2N)/2 even
    slots; the N queries go to N distinct slots drawn in order, without replacement,
    with P(slot i) proportional to (i + 1)^(a - 1), a = ``power_a`` (0.01: mostly
    short gaps; 1: uniform), query j (key k_j) to the j-th slot drawn. Every other step
    of the query region is a uniform random token from {0, ..., V - 1}
    (``random_non_queries=True``) or 0. At each query step the target is the queried
    key's value; cross-entropy only there (mask), inputs one-hot over V, outputs V
    classes. Zoology requires L >= 4N and V > L; so do we.

    chance_loss = ln(V - V/2): every value is uniform over the value vocabulary. The
    paper reports accuracy over the queries (our ``accuracy``) and defines no
    threshold; ``solved``: accuracy >= ``solved_threshold`` (default 0.99).
    ``sequence_accuracy`` (all N queries right) is extra.
    """

    name = "associative_recall"
    source = "Arora et al. 2023 (Zoology, MQAR)"
    loss_type = "xent"
    length: int = 64
    vocab_size: int = 8192
    n_pairs: int = 8
    power_a: float = 0.01
    random_non_queries: bool = True
    solved_threshold: float = 0.99

    def validate(self):
        check_int(self.name, "n_pairs", self.n_pairs, 1)
        check_int(self.name, "length", self.length, 4 * self.n_pairs, "Zoology: 4 * n_pairs")
        if self.length % 2:
            raise ValueError(
                f"{self.name}: length={self.length} must be even (Zoology's input_seq_len)"
            )
        check_int(
            self.name, "vocab_size", self.vocab_size, self.length + 1, "Zoology: > length"
        )
        check_float(self.name, "power_a", self.power_a, 0.0, 1.0, True)
        if not isinstance(self.random_non_queries, bool):
            raise ValueError(
                f"{self.name}: random_non_queries={self.random_non_queries!r} must be true or false"
            )
        super().validate()

    @property
    def input_size(self) -> int:
        return self.vocab_size

    @property
    def output_size(self) -> int:
        return self.vocab_size

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def chance_loss(self) -> float:
        return math.log(self.vocab_size - self.vocab_size // 2)

    def _sample(self, key, batch_size):
        L, V, N, B = self.length, self.vocab_size, self.n_pairs, batch_size
        half, slots = V // 2, (self.length - 2 * self.n_pairs) // 2
        k_draw, k_noise = jax.random.split(key)
        # one Gumbel draw for three weighted samplings without replacement (in draw
        # order, Gumbel top-k): keys, values (uniform) and query slots (power law)
        log_w = (self.power_a - 1.0) * jnp.log(jnp.arange(1, slots + 1, dtype=jnp.float32))
        gumbel_BK = jax.random.gumbel(k_draw, (B, half - 1 + V - half + slots))
        gumbel = jnp.split(gumbel_BK, [half - 1, V - 1], axis=1)
        keys_BN = 1 + jax.lax.top_k(gumbel[0], N)[1]
        values_BN = half + jax.lax.top_k(gumbel[1], N)[1]
        gaps_BN = jax.lax.top_k(gumbel[2] + log_w, N)[1]
        if self.random_non_queries:
            ids_BT = jax.random.randint(k_noise, (B, L), 0, V)
        else:
            ids_BT = jnp.zeros((B, L), jnp.int32)
        pairs_B2N = jnp.stack([keys_BN, values_BN], axis=-1).reshape(B, 2 * N)
        ids_BT = ids_BT.at[:, : 2 * N].set(pairs_B2N)
        query_BNT = jnp.arange(L) == (2 * N + 2 * gaps_BN)[..., None]  # query j at step t
        is_query_BT = jnp.any(query_BNT, axis=1)
        ids_BT = jnp.where(is_query_BT, jnp.sum(query_BNT * keys_BN[..., None], axis=1), ids_BT)
        targets = jnp.sum(query_BNT * values_BN[..., None], axis=1).astype(jnp.int32)
        inputs = jax.nn.one_hot(ids_BT, V, dtype=jnp.float32)
        mask = is_query_BT.astype(jnp.float32)
        return Batch(inputs, targets, mask, jnp.full((B,), L, jnp.int32))

    def accuracy(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        ok = argmax_correct(outputs, batch).astype(jnp.float32)
        return jnp.sum(ok * batch.mask) / jnp.maximum(jnp.sum(batch.mask), 1.0)

    def correct(self, outputs, batch: Batch):
        """All N queries of the sequence are answered right."""
        self._check_outputs(outputs, batch)
        return all_masked(argmax_correct(outputs, batch), batch.mask > 0)

    def extra_metrics(self, outputs, batch: Batch):
        return {"sequence_accuracy": jnp.mean(self.correct(outputs, batch).astype(jnp.float32))}

    def dependency_lags(self, batch: Batch):
        """A query at step t asks for the value of key j, shown at step 2j + 1: the largest
        t - 2j - 1 over the sequence's queries."""
        N = self.n_pairs
        ids_BT = jnp.argmax(batch.inputs, axis=-1)
        keys_BN = ids_BT[:, 0 : 2 * N : 2]
        j_BT = jnp.argmax(ids_BT[:, :, None] == keys_BN[:, None, :], axis=-1)  # keys distinct
        t_T = jnp.arange(self.seq_len, dtype=jnp.int32)
        lag_BT = t_T - 2 * j_BT.astype(jnp.int32) - 1
        return jnp.max(jnp.where(batch.mask > 0, lag_BT, 0), axis=1).astype(jnp.int32)


@dataclass(frozen=True)
class InductionHeadTask(Task):
    """Induction head (Olsson et al. 2022), in the synthetic form of Fu, Dao et al. 2023
    (H3, arXiv:2212.14052), generator of HazyResearch/safari
    (``src/dataloaders/synthetics.py``, ``induction_head``, one trigger).

    With L = ``length`` (H3's ``input_seq_len``, 30) and K = ``n_symbols`` (18: H3's
    vocabulary of 20 minus its two special tokens): L tokens uniform over the content
    symbols (ids 0..K-1); the trigger (id K, H3's "=>") overwrites position p, uniform
    on 0..L-3, so the token at p + 1 (a content symbol) is the target; the trigger
    is repeated at step L. ``seq_len = L + 1``; the target, and the loss
    (cross-entropy over the K content classes), at the last step only. (H3 trains the
    language-modelling loss on every step; the other next tokens are uniform noise,
    so only this one is learnable; H3 evaluates it alone, as we do.)

    chance_loss = ln K (the target is uniform). A sequence is correct when the argmax
    at the last step is the target; ``solved`` (H3 reports accuracy, no threshold):
    fraction correct >= ``solved_threshold`` (default 1.0).
    """

    name = "induction_head"
    source = "Olsson et al. 2022; Fu et al. 2023 (H3)"
    loss_type = "xent"
    length: int = 30
    n_symbols: int = 18
    solved_threshold: float = 1.0

    def validate(self):
        check_int(self.name, "length", self.length, 3, "the trigger and its target before L-1")
        check_int(self.name, "n_symbols", self.n_symbols, 2)
        super().validate()

    @property
    def input_size(self) -> int:
        return self.n_symbols + 1

    @property
    def output_size(self) -> int:
        return self.n_symbols

    @property
    def seq_len(self) -> int:
        return self.length + 1

    @property
    def chance_loss(self) -> float:
        return math.log(self.n_symbols)

    def _sample(self, key, batch_size):
        L, K, S, B = self.length, self.n_symbols, self.seq_len, batch_size
        # one draw over the columns (p, token_0, ..., token_L)
        ints_BC = jax.random.randint(key, (B, 1 + S), 0, jnp.array([L - 2] + [K] * S))
        pos_B, ids_BT = ints_BC[:, 0], ints_BC[:, 1:]
        t_T = jnp.arange(S)
        target_B = jnp.take_along_axis(ids_BT, pos_B[:, None] + 1, axis=1)[:, 0]
        trigger_BT = (t_T[None, :] == pos_B[:, None]) | (t_T[None, :] == L)
        ids_BT = jnp.where(trigger_BT, K, ids_BT)
        inputs = jax.nn.one_hot(ids_BT, self.input_size, dtype=jnp.float32)
        last_BT = jnp.broadcast_to(t_T == L, (B, S))
        targets = jnp.where(last_BT, target_B[:, None], 0).astype(jnp.int32)
        return Batch(inputs, targets, last_BT.astype(jnp.float32), jnp.full((B,), S, jnp.int32))

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return at_last_step(argmax_correct(outputs, batch), batch.lengths)

    def dependency_lags(self, batch: Batch):
        """The answer is the symbol right after the first trigger (at p): from step p + 1 to
        the query at step L."""
        trigger_BT = batch.inputs[..., self.n_symbols] > 0
        return last_scored_step(batch.mask) - first_step(trigger_BT) - 1
