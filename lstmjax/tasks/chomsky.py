"""Chomsky-hierarchy tasks of Delétang et al. 2023 (ICLR, arXiv:2207.02098), as in
google-deepmind/neural_networks_chomsky_hierarchy: regular (parity, even_pairs,
cycle_navigation, modular_arithmetic) and deterministic context-free
(stack_manipulation, reverse_string).

Common layout (the paper's ``make_model_with_empty_targets``): a string of n symbols,
one-hot over the task's alphabet plus one extra "output" symbol, is followed by
``out_len(n)`` steps of that output symbol, at which the answer is read (1 step for the
classification tasks, n or n + 1 for the string outputs). n is drawn per sequence,
uniform on {``min_length``, ..., ``length``} (the paper trains on lengths uniform on
1..40, one length per batch; we draw one per sequence and right-pad to
``seq_len = length + out_len(length)``; ``lengths`` = n + out_len(n)). Cross-entropy
at the output steps (mask), averaged over the masked steps of the batch.

``accuracy`` is the paper's: the fraction of correct argmax predictions over the scored
output steps of the batch; ``solved``: accuracy >= ``solved_threshold`` (default 0.9,
the level at which the paper counts a score as successful generalisation). The paper's
*score* is this accuracy averaged over lengths 41..500 after training on 1..40: make
the task with ``min_length=length=L`` to evaluate at one length L.
``sequence_accuracy`` (every output step of a sequence right) is an extra metric.

chance_loss is the loss of the best predictor that sees the time step but no input
symbol: at each step t it predicts the distribution of the target among sequences
scored at t (mixing over the lengths n). Exact, from the task's distribution of
targets given n; each class states it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.tasks.base import Batch, Task, all_masked, argmax_correct, check_int, entropy


class _ChomskyTask(Task):
    """Shared layout, lengths, metrics and chance level (see the module docstring)."""

    loss_type = "xent"
    source = "Delétang et al. 2023 (Chomsky hierarchy)"
    n_symbols: ClassVar[int]  # the string's alphabet; the output symbol is id n_symbols

    def validate(self):
        check_int(self.name, "length", self.length, 1)
        check_int(self.name, "min_length", self.min_length, 1)
        if self.min_length > self.length:
            raise ValueError(
                f"{self.name}: min_length={self.min_length} exceeds length={self.length}; "
                "valid range: 1 <= min_length <= length"
            )
        super().validate()

    @property
    def input_size(self) -> int:
        return self.n_symbols + 1

    def out_len(self, n):
        """Number of output steps after a string of length n (an int or an array)."""
        return n * 0 + 1

    @property
    def seq_len(self) -> int:
        return self.length + self.out_len(self.length)

    # -- sampling -----------------------------------------------------------------------
    def _symbol_range(self):
        """Per position, the symbol ids are uniform on [low, high): (low [L], high [L])."""
        return [0] * self.length, [self.n_symbols] * self.length

    def _draw(self, key, batch_size):
        """(n [B], symbol ids [B, length]; entries at t >= n are ignored) from one
        ``randint`` over the columns (n, symbol_1, ..., symbol_length)."""
        low, high = self._symbol_range()
        ints_BC = jax.random.randint(
            key, (batch_size, 1 + self.length),
            jnp.array([self.min_length, *low]), jnp.array([self.length + 1, *high]),
        )
        return ints_BC[:, 0], ints_BC[:, 1:]

    def _answer(self, ids_BL, n_B):
        """Target ids [B, out_len(length)] computed from the string (t < n only)."""
        raise NotImplementedError

    def _sample(self, key, batch_size):
        n_B, ids_BL = self._draw(key, batch_size)
        y_BO = self._answer(ids_BL, n_B)
        t_T = jnp.arange(self.seq_len)
        n_B1, out_B1 = n_B[:, None], self.out_len(n_B)[:, None]
        in_BT = t_T[None, :] < n_B1
        out_BT = (t_T[None, :] >= n_B1) & (t_T[None, :] < n_B1 + out_B1)
        padded_BT = jnp.pad(ids_BL, ((0, 0), (0, self.seq_len - self.length)))
        ids_BT = jnp.where(in_BT, padded_BT, jnp.where(out_BT, self.n_symbols, -1))
        inputs = jax.nn.one_hot(ids_BT, self.input_size, dtype=jnp.float32)
        j_BT = jnp.clip(t_T[None, :] - n_B1, 0, y_BO.shape[1] - 1)
        targets = jnp.where(out_BT, jnp.take_along_axis(y_BO, j_BT, axis=1), 0)
        lengths = (n_B + self.out_len(n_B)).astype(jnp.int32)
        return Batch(inputs, targets.astype(jnp.int32), out_BT.astype(jnp.float32), lengths)

    # -- metrics ------------------------------------------------------------------------
    def score_mask(self, batch: Batch):
        """Bool [B, T]: the output steps the paper's accuracy counts."""
        return batch.mask > 0

    def accuracy(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        scored = self.score_mask(batch).astype(jnp.float32)
        ok = argmax_correct(outputs, batch).astype(jnp.float32)
        return jnp.sum(ok * scored) / jnp.maximum(jnp.sum(scored), 1.0)

    def correct(self, outputs, batch: Batch):
        """Every scored output step of the sequence is right."""
        self._check_outputs(outputs, batch)
        return all_masked(argmax_correct(outputs, batch), self.score_mask(batch))

    def extra_metrics(self, outputs, batch: Batch):
        return {"sequence_accuracy": jnp.mean(self.correct(outputs, batch).astype(jnp.float32))}

    # -- chance level -------------------------------------------------------------------
    def length_probs(self) -> dict[int, float]:
        """P(n) of the string length n."""
        span = self.length - self.min_length + 1
        return {n: 1.0 / span for n in range(self.min_length, self.length + 1)}

    def answer_probs(self, n: int) -> np.ndarray:
        """[out_len(n), output_size]: distribution of each output step's target given n."""
        raise NotImplementedError

    @property
    def chance_loss(self) -> float:
        return _blind_chance(self)


@functools.cache
def _blind_chance(task: _ChomskyTask) -> float:
    """Token-mean loss of the best time-step-only predictor (see the module docstring)."""
    mass_T = np.zeros(task.seq_len)
    mix_TC = np.zeros((task.seq_len, task.output_size))
    for n, p_n in task.length_probs().items():
        probs = task.answer_probs(n)
        mix_TC[n : n + len(probs)] += p_n * probs
        mass_T[n : n + len(probs)] += p_n
    scored = mass_T > 0
    h_T = entropy(mix_TC[scored] / mass_T[scored, None])
    return float(np.sum(mass_T[scored] * h_T) / np.sum(mass_T))


_UNIFORM_BIT = np.array([[0.5, 0.5]])


@dataclass(frozen=True)
class ParityTask(_ChomskyTask):
    """Parity check (regular), Delétang et al. 2023: a binary string (ids 0, 1, each
    symbol uniform); the class is the number of 1s mod 2 (0 even, 1 odd), read at the
    single output step after the string. See the module docstring for the layout.

    chance_loss = ln 2: the parity of n >= 1 uniform bits is uniform.
    """

    name = "parity"
    n_symbols = 2
    output_size = 2
    length: int = 40
    min_length: int = 1
    solved_threshold: float = 0.9

    def _answer(self, ids_BL, n_B):
        valid_BL = jnp.arange(self.length)[None, :] < n_B[:, None]
        return (jnp.sum(ids_BL * valid_BL, axis=1) % 2)[:, None]

    def answer_probs(self, n):
        return _UNIFORM_BIT


@dataclass(frozen=True)
class EvenPairsTask(_ChomskyTask):
    """Even pairs (regular), Delétang et al. 2023: a binary string; class 1 when the
    number of adjacent unequal pairs ("01" and "10") is odd, else 0 (equivalently:
    first symbol != last symbol). Read at the output step after the string.

    chance_loss = P(n >= 2) ln 2: a string of length 1 has no pairs (class 0 for
    certain); for n >= 2 the class is uniform.
    """

    name = "even_pairs"
    n_symbols = 2
    output_size = 2
    length: int = 40
    min_length: int = 1
    solved_threshold: float = 0.9

    def _answer(self, ids_BL, n_B):
        pair_valid_BL = jnp.arange(1, self.length)[None, :] < n_B[:, None]
        unequal_BL = ids_BL[:, 1:] != ids_BL[:, :-1]
        return (jnp.sum(unequal_BL & pair_valid_BL, axis=1) % 2)[:, None]

    def answer_probs(self, n):
        return np.array([[1.0, 0.0]]) if n == 1 else _UNIFORM_BIT


@dataclass(frozen=True)
class CycleNavigationTask(_ChomskyTask):
    """Cycle navigation (regular), Delétang et al. 2023: actions uniform over ids
    0, 1, 2 meaning a move of -1, 0, +1 on a cycle of 5 states; starting at state 0,
    the class is the final state (sum of the moves mod 5), read after the string.

    chance_loss = mean over n of the entropy of (sum of n uniform {-1, 0, 1}) mod 5
    (ln 3 at n = 1, tending to ln 5).
    """

    name = "cycle_navigation"
    n_symbols = 3
    output_size = 5
    length: int = 40
    min_length: int = 1
    solved_threshold: float = 0.9

    def _answer(self, ids_BL, n_B):
        valid_BL = jnp.arange(self.length)[None, :] < n_B[:, None]
        return (jnp.sum((ids_BL - 1) * valid_BL, axis=1) % 5)[:, None]

    def answer_probs(self, n):
        dist = np.eye(5)[0]
        for _ in range(n):
            dist = sum(np.roll(dist, move) for move in (-1, 0, 1)) / 3.0
        return dist[None, :]


@dataclass(frozen=True)
class ModularArithmeticTask(_ChomskyTask):
    """Modular arithmetic, simple version (regular), Delétang et al. 2023: an
    expression of odd length n, numbers uniform on 0..m-1 (ids 0..m-1, m =
    ``modulus``, 5 in the paper) alternating with operators uniform over + - *
    (ids m, m+1, m+2; id m+3 is the paper's unused blank "_"). The class is the value
    mod m with the usual precedence (* before + and -; 1 - 2 * 3 = 0 mod 5), read
    after the string. n is drawn uniform on {``min_length``..``length``} and, as in
    the paper, reduced by one when even.

    chance_loss: exact, from the distribution of the value given n, computed by
    dynamic programming over the (sum of finished terms, current product) state.
    """

    name = "modular_arithmetic"
    length: int = 40
    min_length: int = 1
    modulus: int = 5
    solved_threshold: float = 0.9

    def validate(self):
        check_int(self.name, "modulus", self.modulus, 2)
        super().validate()

    @property
    def n_symbols(self) -> int:
        return self.modulus + 4

    @property
    def output_size(self) -> int:
        return self.modulus

    def _symbol_range(self):
        even = [t % 2 == 0 for t in range(self.length)]
        m = self.modulus
        return [0 if e else m for e in even], [m if e else m + 3 for e in even]

    def _draw(self, key, batch_size):
        n_B, ids_BL = super()._draw(key, batch_size)
        return n_B - (n_B % 2 == 0), ids_BL

    def _answer(self, ids_BL, n_B):
        m = self.modulus
        pairs = (self.length - 1) // 2
        ops_PB, nums_PB = ids_BL[:, 1 : 2 * pairs : 2].T, ids_BL[:, 2 : 2 * pairs + 1 : 2].T
        valid_PB = (2 * jnp.arange(1, pairs + 1))[:, None] < n_B[None, :]

        def apply(carry, xs):
            done_B, term_B = carry  # sum of finished terms, current product term
            op_B, a_B, valid_B = xs
            mult = op_B == m + 2
            new_done = jnp.where(mult, done_B, (done_B + term_B) % m)
            new_term = jnp.where(mult, term_B * a_B, jnp.where(op_B == m + 1, -a_B, a_B)) % m
            done_B = jnp.where(valid_B, new_done, done_B)
            return (done_B, jnp.where(valid_B, new_term, term_B)), None

        init = (jnp.zeros_like(n_B), ids_BL[:, 0])
        (done_B, term_B), _ = jax.lax.scan(apply, init, (ops_PB, nums_PB, valid_PB))
        return ((done_B + term_B) % m)[:, None]

    def length_probs(self):
        probs: dict[int, float] = {}
        for n, p in super().length_probs().items():
            odd = n - (n % 2 == 0)
            probs[odd] = probs.get(odd, 0.0) + p
        return probs

    def answer_probs(self, n):
        return _modular_value_dist(self.modulus, n)[None, :]


@functools.cache
def _modular_value_dist(m: int, n: int) -> np.ndarray:
    """P(value) of a uniform random expression of odd length n (see the class)."""
    state = np.zeros((m, m))  # [finished sum, current term]
    state[0, :] = 1.0 / m
    a = np.arange(m)
    for _ in range((n - 1) // 2):
        new = np.zeros((m, m))
        for s in range(m):
            for p in range(m):
                w = state[s, p] / (3 * m)
                if w == 0.0:
                    continue
                np.add.at(new, ((s + p) % m, a), w)  # +
                np.add.at(new, ((s + p) % m, (-a) % m), w)  # -
                np.add.at(new, (s, (p * a) % m), w)  # *
        state = new
    value = np.zeros(m)
    for s in range(m):
        for p in range(m):
            value[(s + p) % m] += state[s, p]
    return value


@dataclass(frozen=True)
class StackManipulationTask(_ChomskyTask):
    """Stack manipulation (deterministic context-free), Delétang et al. 2023: a stack of
    s bits (ids 0, 1; given bottom to top), s uniform on 1..n-1 (s = 1 when n = 1), then
    n - s actions uniform over POP (id 2), PUSH 0 (id 3), PUSH 1 (id 4); POP on an empty
    stack is ignored. The n + 1 output steps give the final stack top to bottom, then
    the termination class 2, then class 0 padding (classes 0, 1, 2). The loss covers all
    n + 1 output steps, as in the paper; the accuracy (``score_mask``) only the steps up
    to and including the termination symbol (the paper's ``accuracy_mask``).

    chance_loss: exact, from the distribution of the final stack height given n (a
    random walk reflected at 0, +1 with probability 2/3); the stack's bits are uniform
    and independent of it.
    """

    name = "stack_manipulation"
    n_symbols = 5
    output_size = 3
    length: int = 40
    min_length: int = 1
    solved_threshold: float = 0.9

    def out_len(self, n):
        return n + 1

    def _draw(self, key, batch_size):
        # n, then the columns (s, r_1..r_L): s uniform on 1..max(n-1, 1), r uniform on 0..5;
        # a stack bit is r mod 2 and an action 2 + r mod 3 (each position uses one of them)
        k_n, k_s = jax.random.split(key)
        n_B = jax.random.randint(k_n, (batch_size,), self.min_length, self.length + 1)
        high_BC = jnp.concatenate(
            [jnp.maximum(n_B - 1, 1)[:, None] + 1, jnp.full((batch_size, self.length), 6)], axis=1
        )
        low_C = jnp.array([1] + [0] * self.length)
        ints_BC = jax.random.randint(k_s, high_BC.shape, low_C, high_BC)
        stack_B, r_BL = ints_BC[:, 0], ints_BC[:, 1:]
        is_stack_BL = jnp.arange(self.length)[None, :] < stack_B[:, None]
        return n_B, jnp.where(is_stack_BL, r_BL % 2, 2 + r_BL % 3)

    def _answer(self, ids_BL, n_B):
        L = self.length
        slots_L = jnp.arange(L)

        def apply(carry, xs):
            stack_BL, h_B = carry
            tok_B, t = xs
            valid_B = t < n_B
            push_B = valid_B & (tok_B != 2)
            pop_B = valid_B & (tok_B == 2) & (h_B > 0)
            bit_B = jnp.where(tok_B < 2, tok_B, tok_B - 3)
            write_BL = push_B[:, None] & (slots_L[None, :] == h_B[:, None])
            stack_BL = jnp.where(write_BL, bit_B[:, None], stack_BL)
            return (stack_BL, h_B + push_B - pop_B), None

        init = (jnp.zeros_like(ids_BL), jnp.zeros_like(n_B))
        (stack_BL, h_B), _ = jax.lax.scan(apply, init, (ids_BL.T, slots_L))
        j_BO = jnp.arange(L + 1)[None, :]
        from_top_BO = jnp.take_along_axis(stack_BL, jnp.clip(h_B[:, None] - 1 - j_BO, 0), axis=1)
        return jnp.where(j_BO < h_B[:, None], from_top_BO, jnp.where(j_BO == h_B[:, None], 2, 0))

    def score_mask(self, batch: Batch):
        term_B = jnp.argmax(batch.targets * batch.mask.astype(jnp.int32) == 2, axis=1)
        return (jnp.arange(self.seq_len)[None, :] <= term_B[:, None]) & (batch.mask > 0)

    def answer_probs(self, n):
        height = _final_height_dist(n)  # [n + 1]: P(final height = h)
        above = 1.0 - np.cumsum(height)  # P(height > j)
        below = np.cumsum(height) - height  # P(height < j)
        return np.stack([above / 2 + below, above / 2, height], axis=1)


@functools.cache
def _final_height_dist(n: int) -> np.ndarray:
    """P(final stack height = h), h = 0..n, for a string of length n (see the class)."""
    if n == 1:
        return np.eye(2)[1]

    def act(p):  # one uniform action: POP with 1/3 (ignored at 0), a PUSH with 2/3
        out = np.zeros_like(p)
        out[1:] += p[:-1] * (2.0 / 3.0)
        out[:-1] += p[1:] / 3.0
        out[0] += p[0] / 3.0
        return out

    # sum over s = 1..n-1 of act^(n - s)(start at s), by Horner's rule
    acc = np.eye(n + 1)[1]
    for s in range(2, n):
        acc = np.eye(n + 1)[s] + act(acc)
    return act(acc) / (n - 1)


@dataclass(frozen=True)
class ReverseStringTask(_ChomskyTask):
    """Reverse string (deterministic context-free), Delétang et al. 2023: a binary
    string s_1..s_n (uniform bits); the n output steps give s_n..s_1.

    chance_loss = ln 2: every output bit is uniform whatever n.
    """

    name = "reverse_string"
    n_symbols = 2
    output_size = 2
    length: int = 40
    min_length: int = 1
    solved_threshold: float = 0.9

    def out_len(self, n):
        return n

    def _answer(self, ids_BL, n_B):
        j_BL = jnp.arange(self.length)[None, :]
        return jnp.take_along_axis(ids_BL, jnp.clip(n_B[:, None] - 1 - j_BL, 0), axis=1)

    def answer_probs(self, n):
        return np.repeat(_UNIFORM_BIT, n, axis=0)
